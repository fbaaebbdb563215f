"""The remote backend against small real HTTP rerank servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.config import ModelConfig, TuningConfig
from sidecar.deadline import Deadline
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
        handler: Handler,
        *,
        path: str = "/v1/rerank",
        tuning: dict[str, Any] | None = None,
        **remote: Any,
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
        model = ModelConfig(name=url, remote=remote)
        scorer = create_scorer(model, TuningConfig.model_validate(tuning or {}))
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
        await scorer.score("q", DOCS, deadline=Deadline.after(0.2))


async def test_the_read_timeout_applies_without_a_call_timeout(serve: Serve) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    scorer, _ = await serve(hang, tuning={"remote": {"read_timeout_s": 0.2}})
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
    scorer = create_scorer(ModelConfig(name="http://127.0.0.1:9/v1/rerank"))
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


# --- what the server says about itself: the instruction field and the batch cap -------------


@pytest.fixture
async def server() -> AsyncIterator[Callable[..., Awaitable[tuple[Scorer, list[Any]]]]]:
    """A rerank server with GET routes of its own (/v1/models, /info), as vLLM, SGLang and
    TEI have; returns the started scorer and the bodies the server received."""
    servers: list[TestServer] = []
    scorers: list[Scorer] = []

    async def start(
        handler: Handler,
        *,
        path: str = "/v1/rerank",
        gets: dict[str, Any] | None = None,
        instruction: str = "Find the letter",
        **remote: Any,
    ) -> tuple[Scorer, list[Any]]:
        seen: list[Any] = []

        async def recording(request: web.Request) -> web.StreamResponse:
            seen.append(await request.json())
            return await handler(request)

        app = web.Application()
        app.router.add_post(path, recording)
        for route, answer in (gets or {}).items():
            app.router.add_get(route, _answering(answer))
        test_server = TestServer(app, host="127.0.0.1")
        await test_server.start_server()
        servers.append(test_server)
        url = f"http://127.0.0.1:{test_server.port}{path}"
        config = ModelConfig(name=url, instruction=instruction, remote=remote)
        scorer = create_scorer(config)
        scorers.append(scorer)
        await scorer.start()
        return scorer, seen

    yield start
    for scorer in scorers:
        await scorer.close()
    for test_server in servers:
        await test_server.close()


def _answering(answer: Any) -> Handler:
    async def get(request: web.Request) -> web.Response:
        return web.json_response(answer)

    return get


def _models(owner: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": "Qwen/Qwen3-Reranker-0.6B", "owned_by": owner}]}


async def sglang(request: web.Request) -> web.Response:
    # SGLang answers a bare list of {score, document, index}.
    body = await request.json()
    return web.json_response(
        [
            {"score": _score_of(d), "document": d, "index": i}
            for i, d in enumerate(body["documents"])
        ]
    )


async def test_sglang_gets_the_instruction_in_its_instruct_field(server: Any) -> None:
    scorer, seen = await server(sglang, gets={"/v1/models": _models("sglang")})
    result = await scorer.score("which letter?", DOCS)
    assert result.scores == [0.1, 0.9, 0.5]
    assert seen[0]["instruct"] == "Find the letter"
    assert "chat_template_kwargs" not in seen[0]
    await scorer.score("q", DOCS, "Per-request instruction")
    assert seen[1]["instruct"] == "Per-request instruction"
    assert scorer.info.extra["server"] == "sglang"
    assert scorer.info.extra["instruction_field"] == "instruct"
    assert scorer.info.warnings == ()


async def test_vllm_gets_the_instruction_as_a_template_argument(server: Any) -> None:
    scorer, seen = await server(cohere, gets={"/v1/models": _models("vllm")})
    assert (await scorer.score("which letter?", DOCS)).scores == [0.1, 0.9, 0.5]
    assert seen[0]["chat_template_kwargs"] == {"instruction": "Find the letter"}
    assert "instruct" not in seen[0]
    assert scorer.info.warnings == ()


async def test_a_server_without_an_instruction_field_is_named_in_ready(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="sidecar.models")
    scorer, seen = await server(cohere, gets={"/v1/models": _models("someone-else")})
    await scorer.score("q", DOCS)
    assert "instruct" not in seen[0] and "chat_template_kwargs" not in seen[0]
    (warning,) = scorer.info.warnings
    assert "instruction is not sent" in warning and "someone-else" in warning
    assert "instruction is not sent" in caplog.text


async def test_tei_has_no_instruction_field_and_its_batch_cap_is_kept(server: Any) -> None:
    async def capped(request: web.Request) -> web.Response:
        body = await request.json()
        if len(body["texts"]) > 2:
            return web.json_response(
                {"error": "batch size 3 > maximum allowed batch size 2"}, status=413
            )
        return await tei_answer(body)

    info = {"model_id": "BAAI/bge-reranker-base", "max_client_batch_size": 2}
    scorer, seen = await server(capped, path="/rerank", gets={"/info": info})
    docs = [*DOCS, "beta", "alpha"]
    result = await scorer.score("q", docs)
    assert result.scores == [0.1, 0.9, 0.5, 0.9, 0.1]
    assert sorted(len(body["texts"]) for body in seen) == [1, 2, 2]
    assert all("instruct" not in body for body in seen)
    assert scorer.info.extra["max_batch_documents"] == "2"
    assert "instruction is not sent" in scorer.info.warnings[0]


async def tei_answer(body: dict[str, Any]) -> web.Response:
    results = [{"index": i, "score": _score_of(text)} for i, text in enumerate(body["texts"])]
    return web.json_response(results)


async def test_the_configured_batch_cap_splits_the_window(server: Any) -> None:
    scorer, seen = await server(cohere, max_batch_documents=2, instruction_field="none")
    assert (await scorer.score("q", DOCS)).scores == [0.1, 0.9, 0.5]
    assert [body["documents"] for body in seen] in ([DOCS[:2], DOCS[2:]], [DOCS[2:], DOCS[:2]])


async def test_a_refused_batch_without_a_known_cap_is_a_failure(server: Any) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "too many"}, status=413)

    scorer, _ = await server(refuse)
    with pytest.raises(ModelFailure, match="batch size"):
        await scorer.score("q", DOCS)
