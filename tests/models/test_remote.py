"""The remote backend against small real HTTP rerank servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.config import ModelConfig, WorkerConfig
from sidecar.errors import ModelFailure, Overloaded, RerankTimeout
from sidecar.scoring.base import Scorer
from sidecar.scoring.factory import create_scorer
from sidecar.scoring.remote import RemoteScorer, wire_protocol

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[..., Awaitable[tuple[Scorer, list[dict[str, Any]]]]]

DOCS = ["alpha", "beta", "gamma"]


def _score_of(text: str) -> float:
    return {"alpha": 0.1, "beta": 0.9, "gamma": 0.5}.get(text, 0.0)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[TestServer] = []
    scorers: list[Scorer] = []

    async def start(
        handler: Handler, *, path: str = "/v1/rerank", **remote: Any
    ) -> tuple[Scorer, list[dict[str, Any]]]:
        seen: list[dict[str, Any]] = []

        async def recording(request: web.Request) -> web.StreamResponse:
            seen.append(
                {"body": await request.json(), "auth": request.headers.get("Authorization")}
            )
            return await handler(request)

        app = web.Application()
        app.router.add_post(path, recording)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        url = f"http://127.0.0.1:{server.port}{path}"
        scorer = create_scorer(ModelConfig(name=url, remote=remote), WorkerConfig())
        scorers.append(scorer)
        await scorer.start()
        return scorer, seen

    yield start
    for scorer in scorers:
        await scorer.close()
    for server in servers:
        await server.close()


async def cohere(request: web.Request) -> web.Response:
    body = await request.json()
    results = [
        {"index": i, "relevance_score": _score_of(doc)} for i, doc in enumerate(body["documents"])
    ]
    results.sort(key=lambda r: -r["relevance_score"])
    return web.json_response({"id": "x", "results": results, "usage": {"total_tokens": 42}})


async def tei(request: web.Request) -> web.Response:
    body = await request.json()
    results = [{"index": i, "score": _score_of(text)} for i, text in enumerate(body["texts"])]
    return web.json_response(sorted(results, key=lambda r: -r["score"]))


async def test_cohere_shape(serve: Serve) -> None:
    scorer, seen = await serve(cohere, model="served-model", api_key="secret")
    assert isinstance(scorer, RemoteScorer) and scorer.ready
    assert scorer.info.kind == "remote"
    result = await scorer.score("which letter?", DOCS)
    assert result.scores == [0.1, 0.9, 0.5]
    assert result.tokens == 42
    body = seen[0]["body"]
    assert body["query"] == "which letter?" and body["documents"] == DOCS
    assert body["model"] == "served-model" and body["top_n"] == 3
    assert seen[0]["auth"] == "Bearer secret"


async def test_tei_shape(serve: Serve) -> None:
    scorer, seen = await serve(tei, path="/rerank")
    assert scorer.info.extra["protocol"] == "tei"
    assert (await scorer.score("q", DOCS)).scores == [0.1, 0.9, 0.5]
    assert seen[0]["body"]["texts"] == DOCS


async def test_a_hanging_server_times_out(serve: Serve) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    scorer, _ = await serve(hang)
    with pytest.raises(RerankTimeout):
        await scorer.score("q", DOCS, timeout=0.2)


async def test_the_read_timeout_applies_without_a_call_timeout(serve: Serve) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    scorer, _ = await serve(hang, read_timeout_s=0.2)
    with pytest.raises(RerankTimeout):
        await scorer.score("q", DOCS)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (web.json_response({"results": [{"index": 0, "relevance_score": 1.0}]}), ModelFailure),
        (
            web.json_response({"results": [{"index": i, "relevance_score": 1} for i in (0, 1, 1)]}),
            ModelFailure,
        ),
        (
            web.json_response(
                {"results": [{"index": i, "relevance_score": "hi"} for i in range(3)]}
            ),
            ModelFailure,
        ),
        (
            web.Response(text='[{"index": 0, "score": NaN}]', content_type="application/json"),
            ModelFailure,
        ),
        (web.json_response({"unexpected": True}), ModelFailure),
        (web.Response(status=500, text="boom"), ModelFailure),
        (web.Response(status=429, text="slow down"), Overloaded),
    ],
)
async def test_bad_answers_are_failures(
    serve: Serve, answer: web.Response, error: type[Exception]
) -> None:
    async def respond(request: web.Request) -> web.Response:
        return answer

    scorer, _ = await serve(respond)
    with pytest.raises(error):
        await scorer.score("q", DOCS)


async def test_an_unreachable_server_is_a_failure() -> None:
    scorer = create_scorer(ModelConfig(name="http://127.0.0.1:9/v1/rerank"), WorkerConfig())
    await scorer.start()
    try:
        with pytest.raises(ModelFailure):
            await scorer.score("q", DOCS)
    finally:
        await scorer.close()


@pytest.mark.parametrize(
    ("url", "configured", "expected"),
    [
        ("http://h/v1/rerank", "auto", "cohere"),
        ("https://api.jina.ai/v1/rerank", "auto", "cohere"),
        ("http://h:8080/rerank", "auto", "tei"),
        ("http://h:8080/rerank", "cohere", "cohere"),
        ("http://h/v1/rerank", "tei", "tei"),
    ],
)
def test_wire_protocol(url: str, configured: str, expected: str) -> None:
    assert wire_protocol(url, configured) == expected
