"""The direct rerank API over HTTP, with a real tiny cross-encoder behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sidecar.app import create_app
from sidecar.config import build_config
from sidecar.handlers.rerank_api import EMPTY
from tests.support.apps import until_ready

QUERY = "what is the capital of france"
DOCS = ["berlin is in germany.", "paris is the capital of france.", "bananas are yellow."]

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


#: The rerank API never asks ES: nothing listens here.
NO_ES = "http://127.0.0.1:9"


@pytest.fixture
async def make_client(bert2_dir: Path, tmp_path: Path) -> AsyncIterator[MakeClient]:
    """A whole sidecar app (the rerank API goes through its engine and admission) on a real
    socket, its model loaded; with ``loaded=False`` its model directory holds no model yet,
    so it never becomes ready."""
    made: list[Client] = []

    async def make(*, loaded: bool = True, **sections: dict[str, Any]) -> Client:
        empty = tmp_path / "no-model-yet"
        empty.mkdir(exist_ok=True)
        # Random weights: the start-up self-test would refuse the model.
        name = str(bert2_dir if loaded else empty)
        model = {"name": name, "self_test": False, **sections.get("model", {})}
        config = build_config({"es": {"url": NO_ES}, **sections, "model": model})
        client: Client = TestClient(TestServer(create_app(config), host="127.0.0.1"))
        await client.start_server()
        made.append(client)
        if loaded:
            await until_ready(client.app)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


async def _post(client: Client, body: Any, path: str = "/_sidecar/v1/rerank") -> tuple[int, Any]:
    if isinstance(body, bytes):
        response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    else:
        response = await client.post(path, json=body)
    return response.status, await response.json()


async def test_cohere_shape_is_sorted_best_first(client: Client) -> None:
    status, body = await _post(client, {"query": QUERY, "documents": DOCS})
    assert status == 200
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r["index"] for r in body["results"]) == [0, 1, 2]
    assert all("document" not in r for r in body["results"])
    assert body["usage"]["total_tokens"] > 0
    assert body["model"].endswith("tiny-bert-20")


async def test_alias_objects_top_n_and_return_documents(client: Client) -> None:
    status, full = await _post(client, {"query": QUERY, "documents": DOCS})
    documents = [{"text": text} for text in DOCS]
    body = {
        "model": "my-reranker",
        "query": QUERY,
        "documents": documents,
        "top_n": 2,
        "return_documents": True,
    }
    status, top = await _post(client, body, path="/_sidecar/rerank")
    assert status == 200
    assert top["model"] == "my-reranker"
    assert top["results"] == [
        {**r, "document": {"text": DOCS[r["index"]]}} for r in full["results"][:2]
    ]


async def test_top_n_larger_than_the_documents(client: Client) -> None:
    status, body = await _post(client, {"query": QUERY, "documents": DOCS, "top_n": 50})
    assert status == 200 and len(body["results"]) == 3


async def test_seeds_shape_gives_scores_and_ranks(client: Client) -> None:
    status, cohere = await _post(client, {"query": QUERY, "documents": DOCS})
    status, body = await _post(client, {"query": QUERY, "texts": DOCS})
    assert status == 200
    assert set(body) == {"scores", "ranks"}
    by_index = {r["index"]: r["relevance_score"] for r in cohere["results"]}
    assert body["scores"] == pytest.approx([by_index[i] for i in range(3)])
    order = sorted(range(3), key=lambda i: -body["scores"][i])
    assert [body["ranks"][i] for i in order] == [1, 2, 3]


@pytest.mark.parametrize(
    "body",
    [
        {"query": "", "documents": DOCS},
        {"query": "   ", "documents": DOCS},
        {"query": QUERY, "documents": []},
        {"query": QUERY, "texts": []},
        {"documents": DOCS},
        {"query": QUERY},
        {},
    ],
)
async def test_empty_query_or_documents(client: Client, body: dict[str, Any]) -> None:
    status, answer = await _post(client, body)
    assert status == 400
    assert answer["error"]["reason"] == EMPTY
    assert answer["status"] == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": 5, "documents": DOCS}, "[query]"),
        ({"query": QUERY, "documents": "paris"}, "[documents]"),
        ({"query": QUERY, "documents": ["ok", 7]}, "[documents][1]"),
        ({"query": QUERY, "documents": [{"txt": "x"}]}, "[documents][0]"),
        ({"query": QUERY, "texts": ["ok", {"text": "no objects here"}]}, "[texts][1]"),
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, "[top_n]"),
        ({"query": QUERY, "documents": DOCS, "top_n": "2"}, "[top_n]"),
        ({"query": QUERY, "documents": DOCS, "top_n": True}, "[top_n]"),
        ({"query": QUERY, "documents": DOCS, "return_documents": "yes"}, "[return_documents]"),
        ({"query": QUERY, "documents": DOCS, "instruction": ["x"]}, "[instruction]"),
        ({"query": QUERY, "documents": DOCS, "model": 1}, "[model]"),
    ],
)
async def test_wrong_types_name_the_field(client: Client, body: dict[str, Any], field: str) -> None:
    status, answer = await _post(client, body)
    assert status == 400
    assert answer["error"]["type"] == "illegal_argument_exception"
    assert field in answer["error"]["reason"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"'])
async def test_not_a_json_object(client: Client, raw: bytes) -> None:
    status, answer = await _post(client, raw)
    assert status == 400
    assert answer["error"]["type"] == "parse_exception"


async def test_too_many_documents(make_client: MakeClient) -> None:
    client = await make_client(api={"max_documents": 2})
    status, answer = await _post(client, {"query": QUERY, "documents": DOCS})
    assert status == 400
    assert "too many documents" in answer["error"]["reason"]


async def test_body_size_is_bounded(make_client: MakeClient) -> None:
    client = await make_client(tuning={"http": {"max_body_bytes": 200}})
    status, answer = await _post(client, {"query": QUERY, "documents": ["x" * 300]})
    assert status == 413
    assert answer["error"]["type"] == "content_too_long_exception"


async def test_overloaded_is_a_503_without_internals(make_client: MakeClient) -> None:
    client = await make_client(tuning={"worker": {"max_queue_pairs": 2}})
    response = await client.post("/_sidecar/v1/rerank", json={"query": QUERY, "documents": DOCS})
    assert response.status == 503
    answer = await response.json()
    assert answer["error"]["type"] == "service_unavailable_exception"
    assert answer["error"]["reason"] == "reranker overloaded"


async def test_not_ready_is_a_503(make_client: MakeClient) -> None:
    client = await make_client(loaded=False)
    status, answer = await _post(client, {"query": QUERY, "documents": DOCS})
    assert status == 503
    assert answer["error"]["reason"] == "reranker not ready"
