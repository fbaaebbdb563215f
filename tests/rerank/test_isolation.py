"""Two users with different Authorization and different document-level visibility never see
each other's hits, with the score cache and the response cache on.

noida-db has no document-level security, so the upstream here is a small real HTTP server
that behaves like a secured ES: the hits of ``_search`` depend on who asks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.apps import running_sidecar
from tests.support.search import base_config

USERS = {
    "Basic YWxpY2U6eA==": ["alice-1", "alice-2", "shared-1"],
    "Basic Ym9iOng=": ["bob-1", "shared-1"],
}
TEXT = {
    "alice-1": "How to renew books online with your library card.",
    "alice-2": "Opening hours of the main library branch.",
    "bob-1": "Renewing borrowed books: the online catalogue lets you renew twice.",
    "shared-1": "Library card renewal: bring proof of address to the front desk.",
}


@pytest.fixture
async def secured_es() -> AsyncIterator[tuple[str, list[str]]]:
    seen_auth: list[str] = []

    async def search(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        seen_auth.append(auth)
        if auth not in USERS:
            return web.json_response(
                {
                    "error": {"type": "security_exception", "reason": "missing authentication"},
                    "status": 401,
                },
                status=401,
            )
        ids = USERS[auth]
        hits = [
            {
                "_index": "docs",
                "_id": i,
                "_score": 1.0 - n / 10,
                "_source": {"title": i, "body": TEXT[i]},
            }
            for n, i in enumerate(ids)
        ]
        return web.json_response(
            {
                "took": 1,
                "timed_out": False,
                "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {
                    "total": {"value": len(hits), "relation": "eq"},
                    "max_score": 1.0,
                    "hits": hits,
                },
            },
            headers={"X-Elastic-Product": "Elasticsearch"},
        )

    app = web.Application()
    app.router.add_route("*", "/{index}/_search", search)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), seen_auth
    await server.close()


async def test_users_never_see_each_others_hits(secured_es: tuple[str, list[str]]) -> None:
    url, seen_auth = secured_es
    config = base_config(url, rerank={"response_cache": {"enabled": True}})
    body: dict[str, Any] = {"query": {"match": {"body": "renew library card books"}}}
    async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:
        for round_ in range(3):
            for auth, allowed in USERS.items():
                async with s.post(
                    f"{sc.url}/docs/_search", json=body, headers={"Authorization": auth}
                ) as r:
                    assert r.status == 200
                    got = await r.json()
                    expected = "applied" if round_ == 0 else "cached"
                    assert r.headers["X-Rerank"] == expected
                ids = {h["_id"] for h in got["hits"]["hits"]}
                assert ids == set(allowed)
        async with s.post(f"{sc.url}/docs/_search", json=body) as r:
            assert r.status == 401, "no cached answer leaks to an unauthenticated client"
    # The credentials reached ES unchanged; the response cache answered rounds 2 and 3.
    assert seen_auth[:2] == list(USERS)
    assert len(seen_auth) == 3


async def test_score_cache_alone_still_asks_es_every_time(
    secured_es: tuple[str, list[str]],
) -> None:
    url, seen_auth = secured_es
    body: dict[str, Any] = {"query": {"match": {"body": "renew library card books"}}}
    async with running_sidecar(base_config(url)) as sc, aiohttp.ClientSession() as s:
        for _ in range(2):
            for auth, allowed in USERS.items():
                async with s.post(
                    f"{sc.url}/docs/_search", json=body, headers={"Authorization": auth}
                ) as r:
                    got = await r.json()
                assert {h["_id"] for h in got["hits"]["hits"]} == set(allowed)
    assert seen_auth == list(USERS) * 2
