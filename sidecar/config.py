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

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sidecar.errors import ConfigError

ENV_PREFIX = "RERANK_SIDECAR__"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def _check_networks(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP network") from exc
    return value


#: IPv4/IPv6 networks in CIDR notation (a single address is a /32 or /128).
Networks = Annotated[tuple[str, ...], AfterValidator(_check_networks)]


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if "@" in parts.netloc:
        # Credentials in a URL end up in every place the URL is shown (readiness, admin,
        # logs), and an HTTP client sends them on every request made with it: for es.url,
        # on every client's request. The sidecar's own credentials have their own keys.
        raise ValueError(
            "must not carry credentials (user:password@host); the sidecar's own credentials "
            "go in es.auth (for ES) or model.remote.api_key (for a rerank server)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return value.rstrip("/")


def public_url(value: str) -> str:
    """``value`` as it may be shown to anyone: scheme, host, port and path, never user-info,
    query or fragment (config load already refuses them; this holds for any other URL)."""
    parts = urlsplit(value)
    if not parts.scheme or not parts.hostname:
        return value if "@" not in value and "?" not in value else "<redacted>"
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def public_name(model: str) -> str:
    """A model name as clients see it: a rerank server's URL without credentials or query."""
    return public_url(model) if model.startswith(("http://", "https://")) else model


#: Peers on this machine only: the default of every surface that is not meant for the network.
LOOPBACK = ("127.0.0.0/8", "::1/128")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9280
    #: Bodies of intercepted requests (_search, _msearch, /v1/rerank) are read into memory to
    #: be rewritten; this bounds them. Pass-through bodies are streamed and not bounded here.
    max_body_bytes: PositiveInt = 10 * 1024 * 1024
    #: On SIGTERM: stop accepting, then wait this long for in-flight requests.
    shutdown_timeout_s: PositiveFloat = 15.0
    #: How long a client may take to send a body the sidecar reads (intercepted endpoints);
    #: on pass-through requests, the longest pause between two pieces of the body.
    client_read_timeout_s: PositiveFloat = 60.0
    #: An idle keep-alive connection is closed after this long. It also bounds the time a
    #: client has, from connecting (or from the previous response), to send a complete
    #: request line and headers: a slow-header (slowloris) client is cut off after it.
    keepalive_timeout_s: PositiveFloat = 75.0
    #: A streamed body, either way (a pass-through upload, an answer to a client), must
    #: move at least this many bytes per second on average once ``transfer_grace_s`` has
    #: passed; a client that stops reading or drips its body is cut off, so it cannot
    #: hold an ES connection. 0 turns the rate off (the pauses stay bounded).
    min_transfer_bytes_per_s: Annotated[int, Field(ge=0)] = 1024
    transfer_grace_s: PositiveFloat = 30.0
    #: Request header limits; past them the request is refused with 400 and the connection
    #: closed. Elasticsearch allows 16 KiB of headers (http.max_header_size).
    max_headers: PositiveInt = 128
    max_field_size: Annotated[int, Field(ge=1024)] = 16384
    max_line_size: Annotated[int, Field(ge=1024)] = 16384
    #: Per-request JSON access log lines.
    access_log: bool = True
    #: Use uvloop when installed (measured faster, see docs/benchmarks.md).
    uvloop: bool = True


class ESTimeouts(_Section):
    #: TCP (and TLS) connect to Elasticsearch.
    connect_s: PositiveFloat = 2.0
    #: Wait for each read from Elasticsearch (time to first byte and between chunks).
    read_s: PositiveFloat = 30.0


def _readable_secret(value: Path | None) -> Path | None:
    if value is None:
        return value
    try:
        text = value.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError("the file is not UTF-8 text") from exc
    if not text or "\n" in text:
        raise ValueError("the file must hold the secret on one line")
    return value


SecretFile = Annotated[Path | None, AfterValidator(_readable_secret)]


class ESAuthConfig(_Section):
    """The sidecar's own credentials for Elasticsearch, used only on requests the sidecar
    makes on its own behalf (the readiness probe). Never added to a client's request: each
    client authenticates with its own headers, which pass through unchanged."""

    #: Basic authentication: both username and a password (or password_file).
    username: str | None = None
    password: str | None = None
    password_file: SecretFile = None
    #: An ES API key (the base64 ``id:api_key`` credential), sent as ``ApiKey <key>``.
    api_key: str | None = None
    api_key_file: SecretFile = None

    @model_validator(mode="after")
    def _one_scheme(self) -> ESAuthConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("set api_key or api_key_file, not both")
        basic = self.password is not None or self.password_file is not None
        key = self.api_key is not None or self.api_key_file is not None
        if basic and key:
            raise ValueError("set either username/password or api_key, not both")
        if basic != (self.username is not None):
            raise ValueError("username and password (or password_file) go together")
        return self

    @property
    def configured(self) -> bool:
        return (
            self.username is not None or self.api_key is not None or self.api_key_file is not None
        )


class ESConfig(_Section):
    #: The only upstream the sidecar ever talks to. Request lines and Host headers cannot
    #: change it. It must not carry credentials (see ``auth``).
    url: str = "http://localhost:9200"
    auth: ESAuthConfig = ESAuthConfig()
    timeouts: ESTimeouts = ESTimeouts()
    #: Pooled connections to ES for pass-through requests (_bulk, _doc, _cat...).
    max_connections: PositiveInt = 256
    #: A pool of its own for searches (reranked or not), so that pass-through traffic, or
    #: clients that hold pass-through connections, can never take all of them. The
    #: readiness probe has a connection of its own as well.
    search_connections: PositiveInt = 64
    #: Bytes of ES answers the rerank path holds at once, all searches together; a search
    #: whose answer would go past it is passed through in ES order instead
    #: (``skipped; reason=memory``).
    max_buffered_bytes: PositiveInt = 256 * 1024 * 1024
    #: Verify the upstream's TLS certificate (https URLs).
    verify_tls: bool = True
    #: Largest ES response the sidecar reads into memory to rerank (_search, _msearch);
    #: larger answers on those paths get a 502. Responses it does not rewrite are streamed
    #: and not limited.
    max_response_bytes: PositiveInt = 100 * 1024 * 1024

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
    #: Request body shape: ``cohere`` ({query, documents}: vLLM, SGLang, Jina, Cohere,
    #: Infinity) or ``tei`` ({query, texts}). ``auto`` picks tei for a URL path ending in a
    #: bare ``/rerank`` and cohere otherwise (``/v1/rerank``, ``/v2/rerank``...). Both answer
    #: shapes are understood either way.
    protocol: Literal["auto", "cohere", "tei"] = "auto"
    #: How the instruction reaches the server: ``instruct`` (SGLang's field),
    #: ``chat_template_kwargs`` (vLLM with the Qwen3 reranker template: ``{"instruction":
    #: ...}``), ``none`` (not sent). ``auto`` asks the server who it is (``/v1/models``) at
    #: start and picks the field it has; where it has none, ``/_sidecar/ready`` says so.
    instruction_field: Literal["auto", "instruct", "chat_template_kwargs", "none"] = "auto"
    #: Most documents in one request to the server; a larger window is sent in parts.
    #: Unset, TEI's own ``max_client_batch_size`` (from its ``/info``) is used where the
    #: server reports one.
    max_batch_documents: PositiveInt | None = None


#: Which code serves a model (see sidecar.scoring.detect).
Backend = Literal["qwen3", "seqcls", "biencoder", "remote"]


class ModelConfig(_Section):
    #: An HF model id, a local directory, or an http(s) URL of a rerank server.
    name: str = "Qwen/Qwen3-Reranker-0.6B"
    #: ``auto`` detects the backend from the model's own files (or a URL).
    backend: Literal["auto", Backend] = "auto"
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
    #: Languages (ISO 639-1) the model serves well. Queries confidently detected as another
    #: language are not reranked (short or ambiguous ones always are). Unset (null): the
    #: model's own declaration (the bundled MiniLM declares ``[en]``; other models none, so
    #: every language). ``[]``: every language, no language gate at all.
    languages: tuple[str, ...] | None = None
    #: Torch intra-op threads on CPU. 0: torch's count, less the cores other work keeps
    #: busy while the model runs (sidecar.scoring.local.threads); a number: exactly that.
    cpu_threads: Annotated[int, Field(ge=0)] = 0
    #: CPU speed-up for the seqcls (cross-encoder) and biencoder backends: ``dynamic_int8``
    #: quantizes the linear layers to int8 (weights once, activations per call); ``none``
    #: keeps fp32. Ignored on GPUs and by the qwen3 and remote backends. Quality loss and
    #: speed-up are measured in docs/benchmarks.md.
    cpu_quantization: Literal["none", "dynamic_int8"] = "none"
    #: At start-up, score a few (query, relevant, irrelevant) pairs and refuse the model
    #: (``/_sidecar/ready`` says why) unless every relevant document wins. Local models only;
    #: test models with random weights turn it off.
    self_test: bool = True
    #: Qwen3: compute the prompt's shared head (system prompt, instruction, query) once per
    #: search and run only each document and the prompt's tail per pair. Same scores.
    prefix_reuse: bool = True
    #: When the model cannot be loaded (hub unreachable, disk full, no GPU): ``serve`` keeps
    #: serving ES order (``skipped; reason=model_not_ready``), retries with backoff and turns
    #: reranking on once the model is warm; ``exit`` stops the process (exit code 3). A
    #: configuration that cannot work (a URL with a local backend) always exits with 2.
    on_load_failure: Literal["serve", "exit"] = "serve"
    #: The longest wait between two load attempts (the wait doubles from 1 s up to this).
    load_retry_max_s: PositiveFloat = 60.0
    #: ``/_sidecar/ready`` answers 200 once ES answers and the model is warm, or once its
    #: load has failed or it was refused (searches are served in ES order then, and a
    #: readiness probe must not take the only copy of search away). While the first load
    #: is still under way it answers 503, so a rolling update waits for warm pods; true
    #: answers 200 then too, for a single instance that must serve from its first second.
    ready_while_loading: bool = False
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
        # Only chunking uses the overlap, so only then does it bound max_length.
        chunk = self.long_documents == "chunk"
        if chunk and self.chunk_overlap_tokens >= self.max_length // 2:
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
    #: Unset (the default): what a pass costs is learned for this model, dtype and device, at
    #: warm-up (passes of 1, 2, 4, ... rows timed) and from every pass after, and each batch is
    #: cut into the passes that cost least: on a GPU batches stay whole, on a CPU they are cut
    #: where padding costs more than a pass, and bf16 keeps the large passes its kernels need.
    #: With warm-up off (nothing timed), batches are cut by max_batch_tokens only.
    #: Set, a pass costs this many padded tokens plus its own (a fixed linear model).
    pass_overhead_tokens: Annotated[int, Field(ge=0)] | None = None


def _check_origins(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        if item == "*":
            continue
        parts = urlsplit(item)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or "@" in parts.netloc
        ):
            raise ValueError(f"{item!r} is not an origin (scheme://host[:port]) or '*'")
    return tuple(item.rstrip("/") for item in value)


class SurfaceConfig(_Section):
    """Who may reach one of the sidecar's own surfaces: peers in ``allow_from`` (anyone else
    gets a plain 404, as if the path did not exist) and, when ``token`` is set, only with
    ``Authorization: Bearer <token>`` (or HTTP Basic with the token as the password): 401
    without it, 403 with a wrong one."""

    allow_from: Networks = LOOPBACK
    token: str | None = None

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("must be printable and not blank")
        return value


class UiConfig(SurfaceConfig):
    """The debug page under /_sidecar/ui."""

    enabled: bool = True


class MetricsConfig(SurfaceConfig):
    """Prometheus metrics at /_sidecar/metrics (counts and timings only: no query text, no
    credentials). Open to every peer by default, for scrapers on other hosts."""

    allow_from: Networks = ("0.0.0.0/0", "::/0")


class ApiConfig(SurfaceConfig):
    """The direct rerank API (/_sidecar/v1/rerank, /_sidecar/rerank)."""

    max_documents: PositiveInt = 1000
    #: Seconds a direct API call may wait for the model.
    timeout_s: PositiveFloat = 30.0
    #: Also serve the API at the Cohere-compatible root paths /v1/rerank and /rerank.
    #: Off by default: those paths then belong to Elasticsearch, like every path outside
    #: /_sidecar/.
    cohere_root_path: bool = False
    #: Origins (``https://app.example.com``, or ``*``) whose pages may call the API from a
    #: browser (CORS). Empty: same-origin pages only; any other Origin gets 403.
    cors_origins: Annotated[tuple[str, ...], AfterValidator(_check_origins)] = ()
    #: Each document's text is cut to this many characters before it is tokenized.
    max_chars_per_document: PositiveInt = 65536


def _yaml_mode(value: Any) -> Any:
    # YAML 1.1 reads unquoted on/off as booleans; a rollout mode means the word.
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value


ModeName = Annotated[Literal["on", "off", "shadow"], BeforeValidator(_yaml_mode)]


class IndexRerankConfig(_Section):
    """How documents of the matching indices are turned into text for the model."""

    #: Index name or fnmatch pattern (``catalogue-*``); the first matching entry applies.
    pattern: str
    #: Dotted paths into ``_source``; arrays are joined. Ignored when ``template`` is set.
    fields: tuple[str, ...] = ("title", "body")
    #: e.g. ``"{title}\n{body}"``; placeholders are dotted paths into ``_source``.
    template: str | None = None
    #: Each field's text is cut to this many characters before it reaches the model.
    max_chars_per_field: PositiveInt = 4000
    window: PositiveInt | None = None
    budget_ms: PositiveFloat | None = None
    instruction: str | None = None
    score_mode: Literal["replace", "fusion"] | None = None
    #: Numeric ``_source`` fields blended in fusion mode, e.g. ``{popularity: 0.1}``.
    boost_fields: dict[str, float] = {}

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and not re.search(r"{[^{}]+}", value):
            raise ValueError("must contain at least one {field} placeholder")
        return value


class BreakerConfig(_Section):
    #: Consecutive model faults that open the breaker: errors, unusable scores, and hangs
    #: (no answer at all where a quick one was predicted). Load never counts: queue waits,
    #: shedding, a window cut to fit the budget, clients that go away.
    fail_max: PositiveInt = 5
    #: Seconds the breaker stays open before one small trial request is let through.
    reset_timeout_s: PositiveFloat = 30.0
    #: A window part admitted to the model and without an answer for hang_factor times what
    #: it and the pairs ahead of it should take (from the model's recent answers) is a
    #: hang. Time spent waiting to be admitted is load, never a hang.
    hang_factor: float = Field(default=3.0, gt=1.0)


class LoadConfig(_Section):
    """Reranking as much as the budget allows, and fairly between clients."""

    #: The fewest hits worth reranking: when less of the window fits the budget, the ES
    #: order stands (``fallback; reason=budget``). Also the size of a half-open trial.
    min_window: PositiveInt = 10
    #: A local model scores a window in parts of this many hits, in ES order, so that a
    #: deadline mid-way still leaves a reranked prefix.
    chunk_hits: PositiveInt = 10
    #: Pairs with the model at once, all clients together; more wait, and the client (by
    #: address behind trusted proxies) that used the model least lately goes first.
    max_in_flight_pairs: PositiveInt = 256
    #: With a local model, pairs with it at once are also at most what it answers in this
    #: long (learned as it serves; at least one part): a search that arrives behind a big
    #: request then waits about this long for its first turn, not for the whole request.
    in_flight_ms: PositiveFloat = 250.0
    #: Requests one client may have waiting for the model; past it its new ones fall back
    #: at once (``overloaded``), and no other client's do.
    max_waiting_per_client: PositiveInt = 32
    #: Sub-searches of one ``_msearch`` that are reranked; the rest keep ES order
    #: (``skipped; reason=msearch_limit``). All share the request's one budget.
    msearch_max_reranked: PositiveInt = 20
    #: While other clients are searching, the event loop's CPU one client's searches may
    #: use (parsing, planning, decoding and rewriting answers), as a share of one core.
    #: A client past it waits before its next search goes to ES, at most that search's
    #: budget, and the wait comes off the budget; owing more than the budget, its search
    #: goes to ES as sent and the answer is streamed (``skipped; reason=cpu_share``). Only
    #: while the loop is busy (sidecar.rerank.cpu_share): a client alone never waits.
    client_cpu_share: float = Field(default=0.1, gt=0.0, le=64.0)
    #: While searches ask the model for more than it answers, a search takes at most its
    #: client's fair share of the model's throughput (shared max-min between clients)
    #: divided by the client's search rate, so that many searches get a smaller K instead
    #: of a few the whole window and the rest none (sidecar.rerank.demand). false: each
    #: search takes all of the window its budget allows, first come, first served.
    share_throughput: bool = True


class ScoreCacheConfig(_Section):
    """Scores per (model, instruction, query, index, document id, document text hash),
    all hashed into one fixed-size key."""

    enabled: bool = True
    max_entries: PositiveInt = 200_000
    #: Memory the cache may hold, keys and values included; it keeps fewer entries when
    #: this is reached first.
    max_bytes: Annotated[int, Field(ge=1 << 20)] = 128 * 1024 * 1024
    ttl_s: PositiveFloat = 3600.0
    #: ``shared``: one user's search warms the cache for everyone (fast, but a hit, seen in
    #: ``X-Rerank: cached`` or in the latency, tells a user that someone searched the same
    #: words over the same documents). ``identity``: entries are also keyed by the caller's
    #: identity headers, so a hit only ever comes from the caller's own earlier searches.
    scope: Literal["shared", "identity"] = "shared"


class ResponseCacheConfig(_Section):
    """Whole reranked responses, keyed by a hash of every identity header (Authorization,
    run-as, proxy-auth user and roles, cookies, ``rerank.extra_identity_headers``), every
    header that changes the representation (Accept, Accept-Encoding, Content-Type) and the
    full request. A revoked credential is served from here until ``ttl_s`` unless
    ``verify_identity`` is ``authenticate``."""

    enabled: bool = False
    max_entries: PositiveInt = 2000
    ttl_s: PositiveFloat = 30.0
    #: Memory all cached responses may hold, and the largest one that is cached at all.
    max_bytes: Annotated[int, Field(ge=1 << 20)] = 128 * 1024 * 1024
    max_entry_bytes: PositiveInt = 4 * 1024 * 1024
    #: ``off``: a hit is served without asking ES. ``authenticate``: before each hit the
    #: caller's identity headers are sent to ES on ``GET verify_path``; the hit is served
    #: only on a 200, otherwise the search goes to ES as if there were no entry.
    verify_identity: Literal["off", "authenticate"] = "off"
    #: ``/_security/_authenticate`` (Elasticsearch) or ``/_plugins/_security/authinfo``
    #: (OpenSearch).
    verify_path: str = "/_security/_authenticate"

    @field_validator("verify_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value or not value.isprintable():
            raise ValueError("must be a path starting with / (no query string)")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> ResponseCacheConfig:
        if self.max_entry_bytes > self.max_bytes:
            raise ValueError("max_entry_bytes must not exceed max_bytes")
        return self


def _check_header_names(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        name = item[:-1] if item.endswith("*") else item
        if not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ValueError(f"{item!r} is not a header name (a trailing * matches a prefix)")
    return tuple(item.lower() for item in value)


class FusionConfig(_Section):
    #: score = rerank_weight * rerank + bm25_weight * (bm25 / max bm25) + boosts
    rerank_weight: Annotated[float, Field(ge=0)] = 0.7
    bm25_weight: Annotated[float, Field(ge=0)] = 0.3


class RerankConfig(_Section):
    #: Hits per search that get reranked (the first ``window`` of the ES order).
    window: PositiveInt = 50
    #: The largest window a request may ask for with ``"rerank": {"window": N}``.
    max_window: PositiveInt = 500
    #: Time the model stage may take per request; past it the ES order is returned.
    budget_ms: PositiveFloat = 1500.0
    score_mode: Literal["replace", "fusion"] = "replace"
    fusion: FusionConfig = FusionConfig()
    #: Drop reranked hits whose rerank score is below this (null: keep all).
    min_score: float | None = None
    #: Per-hit object with the original score and rank; null turns it off.
    annotate_field: str | None = "_rerank"
    #: A search with a ``rescore`` clause is the client's own second-stage ranking:
    #: ``skip`` passes it through (``reason=rescore``), ``rerank`` reranks it anyway.
    rescore: Literal["skip", "rerank"] = "skip"
    #: Text fields tried, in order, for indices no ``indices`` entry matches.
    default_fields: tuple[str, ...] = ("title", "body", "text", "content", "abstract")
    max_chars_per_field: PositiveInt = 4000
    indices: tuple[IndexRerankConfig, ...] = ()
    breaker: BreakerConfig = BreakerConfig()
    cache: ScoreCacheConfig = ScoreCacheConfig()
    response_cache: ResponseCacheConfig = ResponseCacheConfig()
    #: Headers that tell users apart beyond the built-in ones (see docs/security.md), for
    #: the response cache key and the identity-scoped score cache; ``x-my-attr-*`` matches
    #: a prefix.
    extra_identity_headers: Annotated[tuple[str, ...], AfterValidator(_check_header_names)] = ()
    #: ``rerank.query`` (or the API's ``query``) longer than this is refused with 400; query
    #: text taken from the ES query is cut to its first this-many characters.
    max_query_chars: PositiveInt = 2048
    #: ``rerank.instruction`` (or the API's ``instruction``) longer than this: 400.
    max_instruction_chars: PositiveInt = 2048
    #: Bounds background (shadow-mode) reranks in flight; beyond it shadow work is dropped.
    max_shadow_tasks: PositiveInt = 64
    load: LoadConfig = LoadConfig()

    @model_validator(mode="after")
    def _window(self) -> RerankConfig:
        if self.window > self.max_window:
            raise ValueError(
                f"window ({self.window}) must not exceed max_window ({self.max_window})"
            )
        return self


class RolloutRule(_Section):
    name: str = ""
    #: Client networks (IPv4/IPv6 CIDR or single addresses); empty matches every client.
    clients: Networks = ()
    #: Index names or fnmatch patterns; empty matches every index.
    indices: tuple[str, ...] = ()
    #: Share of clients (stable hash of the client IP) the rule applies to, 0-100.
    percent: Annotated[float, Field(ge=0, le=100)] = 100.0
    mode: ModeName = "on"


class RolloutConfig(_Section):
    """Who gets reranking: first matching rule wins, else ``default``."""

    default: ModeName = "on"
    rules: tuple[RolloutRule, ...] = ()
    #: YAML file with ``default`` and ``rules``; read at start, on SIGHUP and on the admin
    #: reload call. A bad file keeps the rules in force and reports the error.
    rules_file: Path | None = None
    #: Peers whose forwarding header is believed (CIDRs). Others' is ignored.
    trusted_proxies: Networks = ()
    #: The header the trusted proxies append the client to: ``x-forwarded-for`` (HAProxy
    #: ``option forwardfor``, nginx ``$proxy_add_x_forwarded_for``) or ``forwarded``
    #: (RFC 7239). The other one is never read: a client could have written it.
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    #: Clients allowed to choose the mode per request with ``override_header``.
    trusted_clients: Networks = ()
    override_header: str = "X-Rerank-Mode"


class AdminConfig(_Section):
    """The admin API under /_sidecar/admin/."""

    #: Bearer token; also read from $RERANK_SIDECAR_ADMIN_TOKEN. Without one, every admin
    #: call is refused.
    token: str | None = None
    #: Only peers in these networks reach the admin API at all (others get 404).
    allow_from: Networks = LOOPBACK


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: json: one JSON object per line (for log shippers); text: for humans.
    format: Literal["json", "text"] = "json"
    #: Query text in request logs: a short hash, a truncated prefix, or nothing.
    query: Literal["hash", "truncate", "none"] = "hash"
    query_max_chars: PositiveInt = 64


class SidecarConfig(_Section):
    server: ServerConfig = ServerConfig()
    es: ESConfig = ESConfig()
    model: ModelConfig = ModelConfig()
    worker: WorkerConfig = WorkerConfig()
    api: ApiConfig = ApiConfig()
    ui: UiConfig = UiConfig()
    metrics: MetricsConfig = MetricsConfig()
    rerank: RerankConfig = RerankConfig()
    rollout: RolloutConfig = RolloutConfig()
    admin: AdminConfig = AdminConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _timeouts_differ(self) -> SidecarConfig:
        # Equal budgets make it impossible to tell from the outcome which stage gave up.
        budgets = [self.rerank.budget_ms] + [
            i.budget_ms for i in self.rerank.indices if i.budget_ms is not None
        ]
        for budget in budgets:
            if abs(budget / 1000 - self.es.timeouts.read_s) < 1e-9:
                raise ValueError(
                    "rerank.budget_ms must differ from es.timeouts.read_s "
                    f"(both {self.es.timeouts.read_s}s)"
                )
        return self


# --- loading -------------------------------------------------------------------------------


#: Keys whose values are secrets: never quoted in an error, replaced in ``redacted``.
SECRET_KEYS = frozenset({"password", "api_key", "token"})


def _shown(key: list[str], value: Any) -> str:
    """A config value as an error message may quote it: secrets and URL credentials never."""
    if key and key[-1] in SECRET_KEYS:
        return "'***'"
    if isinstance(value, Mapping) and any(k in SECRET_KEYS for k in value):
        return "a section holding secrets"
    if isinstance(value, str) and "@" in value:
        scheme, sep, rest = value.rpartition("://")
        return repr(f"{scheme}{sep}***@{rest.rpartition('@')[2]}")
    return repr(value)


def _format_error(exc: ValidationError, raw: Mapping[str, Any]) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "<root>"
    msg = err["msg"].removeprefix("Value error, ")
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
    return f"config error: {key}: {msg} (got {_shown(loc, value)}){more}"


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
        if isinstance(value, bool) and text.strip().lower() not in ("true", "false"):
            value = text  # "on"/"off"/"yes"/"no" stay words; pydantic coerces where needed
        # A bare string that YAML reads as a date/other type stays a string where that matters
        # to pydantic; it coerces what it can and names the key when it can't.
        _deep_set(tree, path, value)
    return tree


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
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
    raw = merge(raw, _env_overrides(environ))
    if overrides:
        raw = merge(raw, overrides)
    return build_config(raw)


def _redact(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ("***" if k in SECRET_KEYS and v else _redact(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact(v) for v in node]
    if isinstance(node, str) and "://" in node and "@" in node:
        return public_url(node)
    return node


def redacted(config: SidecarConfig) -> dict[str, Any]:
    """The effective config as plain data, with every secret replaced by ``***`` (any key
    named password, api_key or token, at any depth) and no URL credentials. Secret files
    are shown by path, never read into the output."""
    data: dict[str, Any] = _redact(config.model_dump(mode="json"))
    return data
