"""The remote backend: an HTTP rerank server shared by several sidecars.

Speaks the Cohere/Jina shape (vLLM and SGLang ``/v1/rerank``, Jina, Cohere, Infinity) or
TEI's ``/rerank``; see ``model.remote.protocol``.

The instruction (what Qwen3-Reranker is asked to judge by) goes where the server takes one
(``model.remote.instruction_field``): SGLang's ``instruct`` field, or vLLM's
``chat_template_kwargs: {"instruction": ...}`` (read by vLLM's Qwen3 reranker template).
With ``auto`` the server is asked who it is (``GET /v1/models``: ``owned_by``). A server
with no such field (TEI, one that does not say) gets none, and ``/_sidecar/ready`` and the
log say so: Qwen3 ranks 1-5% worse without its instruction.

A window larger than the server takes in one request (``model.remote.max_batch_documents``,
or TEI's ``max_client_batch_size`` from its ``GET /info``) is sent in parts, concurrently,
instead of failing the whole search.

``start()`` opens the client session and asks the server about itself in the background: a
sidecar can come up before its rerank server, requests fall back until the server answers,
and the questions are asked again (at most every 30 s) until they get an answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from sidecar.config import ModelConfig, RemoteTuning
from sidecar.deadline import Deadline
from sidecar.deadline import now as monotonic
from sidecar.errors import ModelFailure, Overloaded, RerankTimeout, RerankUnavailable
from sidecar.jsonutil import dumps, loads
from sidecar.scoring.base import BatchObserver, ModelInfo, ScoreResult, checked

log = logging.getLogger("sidecar.models")

API_KEY_ENV = "RERANK_SIDECAR_REMOTE_API_KEY"

WireProtocol = Literal["cohere", "tei"]
InstructionField = Literal["instruct", "chat_template_kwargs", "none"]

#: Which field carries the instruction, by the server's own name for itself.
_FIELDS: dict[str, InstructionField] = {"sglang": "instruct", "vllm": "chat_template_kwargs"}
#: Seconds between two attempts to learn about a server that did not answer.
_REDISCOVER_S = 30.0


@dataclass(frozen=True)
class ServerFacts:
    """What the server said about itself (None where it did not say)."""

    #: ``owned_by`` of its ``/v1/models`` (vllm, sglang, ...), or "tei" from its ``/info``.
    kind: str | None = None
    #: TEI's ``max_client_batch_size``.
    batch_cap: int | None = None


def server_root(url: str) -> str:
    """The server's base URL: the rerank URL without ``/rerank`` or ``/v1/rerank``."""
    parts = urlsplit(url)
    path = re.sub(r"(/v\d+)?/rerank/?$", "", parts.path)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def instruction_field(
    configured: str, protocol: WireProtocol, kind: str | None
) -> InstructionField:
    if configured == "instruct":
        return "instruct"
    if configured == "chat_template_kwargs":
        return "chat_template_kwargs"
    if configured == "none" or protocol == "tei":
        return "none"
    return _FIELDS.get(kind or "", "none")


def wire_protocol(url: str, configured: str) -> WireProtocol:
    if configured == "tei":
        return "tei"
    if configured == "cohere":
        return "cohere"
    path = urlsplit(url).path.rstrip("/")
    if path.endswith("/rerank") and not re.search(r"/v\d+/rerank$", path):
        return "tei"
    return "cohere"


def request_body(
    protocol: WireProtocol,
    query: str,
    documents: Sequence[str],
    model: str | None,
    instruction: str | None = None,
    field: InstructionField = "none",
) -> dict[str, Any]:
    body: dict[str, Any]
    if protocol == "tei":
        # truncate: TEI otherwise refuses inputs longer than its model's limit.
        body = {"query": query, "texts": list(documents), "truncate": True, "raw_scores": False}
    else:
        body = {
            "query": query,
            "documents": list(documents),
            "top_n": len(documents),
            "return_documents": False,
        }
        if model:
            body["model"] = model
    if instruction and field == "instruct":
        body["instruct"] = instruction
    elif instruction and field == "chat_template_kwargs":
        body["chat_template_kwargs"] = {"instruction": instruction}
    return body


def parse_scores(payload: Any, count: int) -> list[float]:
    """Scores in document order from ``{"results": [{index, relevance_score}]}`` (Cohere,
    Jina, vLLM) or ``[{index, score}]`` (TEI). Whether they are usable (one finite score per
    document) is checked where every scorer's answer is, in ``score()``."""
    entries = payload.get("results") if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
        raise ModelFailure("the rerank server answered in an unknown shape")
    scores: list[float | None] = [None] * count
    for entry in entries:
        if not isinstance(entry, dict):
            raise ModelFailure("the rerank server answered in an unknown shape")
        index = entry.get("index")
        value = entry.get("relevance_score", entry.get("score"))
        if type(index) is not int or not 0 <= index < count or scores[index] is not None:
            raise ModelFailure("the rerank server answered with a bad or repeated index")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ModelFailure("the rerank server answered a non-numeric score")
        scores[index] = float(value)
    return [score for score in scores if score is not None]


def _usage_tokens(payload: Any) -> int:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
    return tokens if type(tokens) is int and tokens >= 0 else 0


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    """The JSON a GET answers, or None for anything else (a missing endpoint is normal)."""
    try:
        async with session.get(url) as response:
            if response.status != 200:
                return None
            return loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def discover(
    session: aiohttp.ClientSession, root: str, protocol: WireProtocol
) -> ServerFacts | None:
    """Ask the server who it is and what it takes; None if it did not answer at all."""
    info, models = await asyncio.gather(
        _get_json(session, f"{root}/info"),
        _get_json(session, f"{root}/v1/models") if protocol != "tei" else asyncio.sleep(0),
    )
    if isinstance(info, dict) and type(info.get("max_client_batch_size")) is int:
        return ServerFacts(kind="tei", batch_cap=max(1, info["max_client_batch_size"]))
    data = models.get("data") if isinstance(models, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        owner = data[0].get("owned_by")
        return ServerFacts(kind=owner.lower() if isinstance(owner, str) else None)
    if info is not None or models is not None:
        return ServerFacts()
    return None


class RemoteScorer:
    def __init__(self, model: ModelConfig, tuning: RemoteTuning | None = None) -> None:
        self._tuning = tuning or RemoteTuning()
        self._url = model.name
        self._remote = model.remote
        self._instruction = model.instruction
        self._protocol = wire_protocol(model.name, model.remote.protocol)
        self._root = server_root(model.name)
        self._session: aiohttp.ClientSession | None = None
        self._facts: ServerFacts | None = None
        self._discovery: asyncio.Task[None] | None = None
        self._asked_at = -_REDISCOVER_S
        self._observers: list[BatchObserver] = []
        self.info = ModelInfo(
            name=model.name,
            backend="remote",
            source=model.name,
            device="remote",
            dtype="n/a",
            max_length=model.max_length,
            languages=model.languages or (),
            extra={"protocol": self._protocol},
        )

    @property
    def queued_pairs(self) -> int:
        return 0

    def add_batch_observer(self, observer: BatchObserver) -> None:
        """Told of each answer: (documents, tokens the server reports, seconds)."""
        self._observers.append(observer)

    @property
    def ready(self) -> bool:
        return self._session is not None and not self._session.closed

    @property
    def field(self) -> InstructionField:
        """Where the instruction goes, as far as is known about the server now."""
        kind = self._facts.kind if self._facts else None
        return instruction_field(self._remote.instruction_field, self._protocol, kind)

    @property
    def batch_cap(self) -> int | None:
        if self._remote.max_batch_documents is not None:
            return self._remote.max_batch_documents
        return self._facts.batch_cap if self._facts else None

    async def start(self) -> None:
        headers = {"Content-Type": "application/json"}
        api_key = self._remote.api_key or os.environ.get(API_KEY_ENV)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._tuning.max_connections),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self._tuning.connect_timeout_s,
                sock_read=self._tuning.read_timeout_s,
            ),
            headers=headers,
        )
        self._describe()
        self._ask()

    def _ask(self) -> None:
        """Ask the server about itself in the background (unless asked a moment ago)."""
        if self._session is None or (self._discovery and not self._discovery.done()):
            return
        if self._facts is not None or time.monotonic() - self._asked_at < _REDISCOVER_S:
            return
        self._asked_at = time.monotonic()
        self._discovery = asyncio.create_task(self._learn(self._session))

    async def _learn(self, session: aiohttp.ClientSession) -> None:
        facts = await discover(session, self._root, self._protocol)
        if facts is None:
            return
        self._facts = facts
        self._describe()
        for warning in self.info.warnings:
            log.warning("remote reranker: %s", warning)
        log.info(
            "remote reranker: server %s, instruction via %s, at most %s documents a request",
            facts.kind or "unidentified",
            self.field,
            self.batch_cap or "any number of",
        )

    def _describe(self) -> None:
        field = self.field
        extra: dict[str, str] = {"protocol": self._protocol, "instruction_field": field}
        if self._facts is not None:
            extra["server"] = self._facts.kind or "unidentified"
        if self.batch_cap is not None:
            extra["max_batch_documents"] = str(self.batch_cap)
        warnings: list[str] = []
        known = self._facts is not None or self._remote.instruction_field != "auto"
        if field == "none" and known:
            who = (self._facts.kind if self._facts else None) or "this server"
            warnings.append(
                f"the instruction is not sent: {who}'s rerank API has no field for it "
                "(instruction-following rerankers such as Qwen3 rank 1-5% worse without "
                "theirs); set model.remote.instruction_field where the server takes one"
            )
        self.info = replace(self.info, extra=extra, warnings=tuple(warnings))

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            await asyncio.gather(self._discovery, return_exceptions=True)
            self._discovery = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        *,
        deadline: Deadline | None = None,
    ) -> ScoreResult:
        session = self._session
        if session is None or session.closed:
            raise RerankUnavailable("the remote reranker client is not started")
        if not documents:
            return ScoreResult(scores=[])
        try:
            async with asyncio.timeout(None if deadline is None else deadline.remaining()):
                self._ask()
                if self._discovery is not None and not self._discovery.done():
                    # The first requests wait for the server's answer about itself.
                    await asyncio.shield(self._discovery)
                return await self._score(session, query, documents, instruction)
        except TimeoutError as exc:
            raise RerankTimeout("the rerank server did not answer in time") from exc

    async def _score(
        self,
        session: aiohttp.ClientSession,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
    ) -> ScoreResult:
        cap = self.batch_cap or len(documents)
        starts = range(0, len(documents), cap)
        try:
            parts = await asyncio.gather(
                *(self._post(session, query, documents[i : i + cap], instruction) for i in starts)
            )
        except _TooMany:
            if self.batch_cap is not None or self._facts is not None:
                raise ModelFailure("the rerank server refused the batch size") from None
            # An unidentified server refused the batch: ask it what it takes, once.
            facts = await discover(session, self._root, self._protocol)
            if facts is None or facts.batch_cap is None:
                raise ModelFailure("the rerank server refused the batch size") from None
            self._facts = facts
            self._describe()
            return await self._score(session, query, documents, instruction)
        scores = [score for part_scores, _ in parts for score in part_scores]
        return ScoreResult(scores=scores, tokens=sum(tokens for _, tokens in parts))

    async def _post(
        self,
        session: aiohttp.ClientSession,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
    ) -> tuple[list[float], int]:
        body = dumps(
            request_body(
                self._protocol,
                query,
                documents,
                self._remote.model,
                instruction or self._instruction,
                self.field,
            )
        )
        started = monotonic()
        try:
            async with session.post(self._url, data=body) as response:
                if response.status in (429, 503):
                    raise Overloaded(f"the rerank server answered HTTP {response.status}")
                if response.status == 413:
                    raise _TooMany
                if response.status != 200:
                    raise ModelFailure(f"the rerank server answered HTTP {response.status}")
                payload = loads(await response.read())
        except TimeoutError as exc:  # aiohttp's read timeout is a TimeoutError and a ClientError
            raise RerankTimeout("the rerank server did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise ModelFailure("the rerank server could not be reached") from exc
        except ValueError as exc:
            raise ModelFailure("the rerank server answered invalid JSON") from exc
        scores = checked(parse_scores(payload, len(documents)), len(documents))
        tokens = _usage_tokens(payload)
        for observe in self._observers:
            observe(len(documents), tokens, monotonic() - started)
        return scores, tokens


class _TooMany(Exception):
    """HTTP 413: the request held more documents than the server takes at once (TEI)."""
