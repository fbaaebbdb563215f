"""Configuration: one tree of frozen pydantic models, validated once at start-up.

Sources, lowest precedence first:

1. the defaults below (which equal the committed ``config.yaml``);
2. the YAML file (``--config PATH``, or ``$RERANK_SIDECAR_CONFIG``);
3. environment variables ``RERANK_SIDECAR__<SECTION>__<KEY>=value`` (double underscores
   separate levels; values are parsed as YAML scalars, so ``true``, ``5`` and ``[a, b]`` work);
4. command-line flags (``--es-url``, ``--host``, ``--port``, ``--model``).

Any error is reported as one line naming the dotted key and the bad value, e.g.
``config error: es.timeouts.connect_s: Input should be greater than 0 (got -1)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sidecar.errors import ConfigError

ENV_PREFIX = "RERANK_SIDECAR__"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return value.rstrip("/")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9280
    #: Bodies of intercepted requests (_search, _msearch, /v1/rerank) are read into memory to
    #: be rewritten; this bounds them. Pass-through bodies are streamed and not bounded here.
    max_body_bytes: PositiveInt = 10 * 1024 * 1024
    #: On SIGTERM: stop accepting, then wait this long for in-flight requests.
    shutdown_timeout_s: PositiveFloat = 15.0
    #: How long a client may take to send its request headers and body.
    client_read_timeout_s: PositiveFloat = 60.0
    #: Per-request JSON access log lines.
    access_log: bool = True
    #: Use uvloop when installed (measured faster, see docs/benchmarks.md).
    uvloop: bool = True


class ESTimeouts(_Section):
    #: TCP (and TLS) connect to Elasticsearch.
    connect_s: PositiveFloat = 2.0
    #: Wait for each read from Elasticsearch (time to first byte and between chunks).
    read_s: PositiveFloat = 30.0


class ESConfig(_Section):
    #: The only upstream the sidecar ever talks to. Request lines and Host headers cannot
    #: change it.
    url: str = "http://localhost:9200"
    timeouts: ESTimeouts = ESTimeouts()
    #: Pooled connections to ES (one aiohttp ClientSession for the whole process).
    max_connections: PositiveInt = 256
    #: Verify the upstream's TLS certificate (https URLs).
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)


class RemoteConfig(_Section):
    """The remote backend (model.name is a URL of a Cohere/Jina-shaped rerank server)."""

    connect_timeout_s: PositiveFloat = 1.0
    read_timeout_s: PositiveFloat = 10.0
    max_connections: PositiveInt = 64
    #: Sent as ``Authorization: Bearer ...``; also read from $RERANK_SIDECAR_REMOTE_API_KEY.
    api_key: str | None = None
    #: Model name sent in the request body, if the server wants one.
    model: str | None = None


BackendKind = Literal["auto", "qwen3", "seqcls", "biencoder", "remote"]


class ModelConfig(_Section):
    #: An HF model id, a local directory, or an http(s) URL of a rerank server.
    name: str = "Qwen/Qwen3-Reranker-0.6B"
    #: ``auto`` detects the backend from the model's own files (or a URL).
    backend: BackendKind = "auto"
    #: ``auto`` picks cuda, then mps, then cpu.
    device: str = "auto"
    #: ``auto`` is bf16 (or fp16) on GPU and fp32 on CPU.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    #: Token limit of one (query, document) input; longer documents are truncated/chunked.
    max_length: Annotated[int, Field(ge=16)] = 8192
    instruction: str = DEFAULT_INSTRUCTION
    #: What to do with documents longer than max_length.
    long_documents: Literal["truncate", "chunk"] = "truncate"
    chunk_overlap_tokens: Annotated[int, Field(ge=0)] = 64
    max_chunks_per_doc: PositiveInt = 8
    #: Languages (ISO 639-1) the model serves well; empty means "all". Queries detected as
    #: another language are not reranked.
    languages: tuple[str, ...] = ()
    #: Torch intra-op threads on CPU; 0 leaves torch's default.
    cpu_threads: Annotated[int, Field(ge=0)] = 0
    remote: RemoteConfig = RemoteConfig()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if value.startswith(("http://", "https://")):
            return _check_http_url(value)
        if "\x00" in value or any(ch.isspace() for ch in value):
            raise ValueError("is neither an HF model id, a local path nor an http(s) URL")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("must be auto, cpu, mps, cuda or cuda:N")
        return value

    @model_validator(mode="after")
    def _chunks(self) -> ModelConfig:
        if self.chunk_overlap_tokens >= self.max_length // 2:
            raise ValueError("chunk_overlap_tokens must be less than half of max_length")
        return self


class WorkerConfig(_Section):
    """The batching worker that owns the model (one thread)."""

    max_batch_pairs: PositiveInt = 64
    #: Padded tokens in one forward pass (pairs x longest pair).
    max_batch_tokens: PositiveInt = 32768
    #: Pairs waiting for the model; past this, new work is refused at once ("overloaded").
    max_queue_pairs: PositiveInt = 4096
    #: How long the worker waits for more work to fill a batch once it has some.
    batch_wait_ms: Annotated[float, Field(ge=0)] = 1.0
    #: Run one forward pass at start so /ready turns green only once the model is warm.
    warmup: bool = True


class ApiConfig(_Section):
    """The direct rerank API (/v1/rerank, /rerank)."""

    max_documents: PositiveInt = 1000
    #: Seconds a direct API call may wait for the model.
    timeout_s: PositiveFloat = 30.0


class SidecarConfig(_Section):
    server: ServerConfig = ServerConfig()
    es: ESConfig = ESConfig()
    model: ModelConfig = ModelConfig()
    worker: WorkerConfig = WorkerConfig()
    api: ApiConfig = ApiConfig()


# --- loading -------------------------------------------------------------------------------


def _format_error(exc: ValidationError, raw: Mapping[str, Any]) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "<root>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return f"config error: {key}: unknown key"
    value: Any = raw
    for part in loc:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            value = err.get("input")
            break
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"config error: {key}: {msg} (got {value!r}){more}"


def _deep_set(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config error: {'.'.join(path)}: {part} is not a section")
        node = child
    node[path[-1]] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            value = text
        # A bare string that YAML reads as a date/other type stays a string where that matters
        # to pydantic; it coerces what it can and names the key when it can't.
        _deep_set(tree, path, value)
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config error: cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config error: {path} is not valid YAML{where}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {path}: the top level must be a mapping")
    return data


def build_config(raw: Mapping[str, Any]) -> SidecarConfig:
    try:
        return SidecarConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, raw)) from exc


def load_config(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> SidecarConfig:
    """Load and validate the whole configuration; raises ConfigError with one line."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is None and environ.get("RERANK_SIDECAR_CONFIG"):
        path = Path(environ["RERANK_SIDECAR_CONFIG"])
    if path is not None:
        raw = read_yaml(path)
    raw = _merge(raw, _env_overrides(environ))
    if overrides:
        raw = _merge(raw, overrides)
    return build_config(raw)


def redacted(config: SidecarConfig) -> dict[str, Any]:
    """The effective config as plain data, with secrets replaced."""
    data = config.model_dump(mode="json")
    if data["model"]["remote"].get("api_key"):
        data["model"]["remote"]["api_key"] = "***"
    return data
