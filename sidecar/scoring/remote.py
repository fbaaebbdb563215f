"""The remote backend: an HTTP rerank server shared by several sidecars.

Speaks the Cohere/Jina shape (vLLM ``/v1/rerank``, Jina, Cohere, Infinity) or TEI's
``/rerank``; see ``model.remote.protocol``. The instruction is not sent: these APIs have no
field for it, and servers that need one (Qwen3 on vLLM) apply their own template.

``start()`` only opens the client session: the server is not probed, so a sidecar can come
up before its rerank server, and requests fall back until the server answers.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from sidecar.config import ModelConfig
from sidecar.errors import ModelFailure, Overloaded, RerankTimeout, RerankUnavailable
from sidecar.jsonutil import dumps, loads
from sidecar.scoring.base import BatchObserver, ModelInfo, ScoreResult, checked

API_KEY_ENV = "RERANK_SIDECAR_REMOTE_API_KEY"

WireProtocol = Literal["cohere", "tei"]


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
    protocol: WireProtocol, query: str, documents: Sequence[str], model: str | None
) -> dict[str, Any]:
    if protocol == "tei":
        # truncate: TEI otherwise refuses inputs longer than its model's limit.
        return {"query": query, "texts": list(documents), "truncate": True, "raw_scores": False}
    body: dict[str, Any] = {
        "query": query,
        "documents": list(documents),
        "top_n": len(documents),
        "return_documents": False,
    }
    if model:
        body["model"] = model
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


class RemoteScorer:
    def __init__(self, model: ModelConfig) -> None:
        self._url = model.name
        self._remote = model.remote
        self._protocol = wire_protocol(model.name, model.remote.protocol)
        self._session: aiohttp.ClientSession | None = None
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
        """Forward passes happen on the remote server; nothing to observe here."""

    @property
    def ready(self) -> bool:
        return self._session is not None and not self._session.closed

    async def start(self) -> None:
        headers = {"Content-Type": "application/json"}
        api_key = self._remote.api_key or os.environ.get(API_KEY_ENV)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._remote.max_connections),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self._remote.connect_timeout_s,
                sock_read=self._remote.read_timeout_s,
            ),
            headers=headers,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        *,
        # Part of the Scorer contract (the local worker needs the deadline itself).
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> ScoreResult:
        session = self._session
        if session is None or session.closed:
            raise RerankUnavailable("the remote reranker client is not started")
        if not documents:
            return ScoreResult(scores=[])
        body = dumps(request_body(self._protocol, query, documents, self._remote.model))
        try:
            async with asyncio.timeout(timeout):
                async with session.post(self._url, data=body) as response:
                    if response.status in (429, 503):
                        raise Overloaded(f"the rerank server answered HTTP {response.status}")
                    if response.status != 200:
                        raise ModelFailure(f"the rerank server answered HTTP {response.status}")
                    payload = loads(await response.read())
        except TimeoutError as exc:
            raise RerankTimeout("the rerank server did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise ModelFailure("the rerank server could not be reached") from exc
        except ValueError as exc:
            raise ModelFailure("the rerank server answered invalid JSON") from exc
        scores = checked(parse_scores(payload, len(documents)), len(documents))
        return ScoreResult(scores=scores, tokens=_usage_tokens(payload))
