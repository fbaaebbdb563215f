"""The sidecar applies the client's _source filter itself when it had to fetch more; the
result must equal what ES returns for the same filter."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from elasticsearch import Elasticsearch

from tests.conftest import ESTarget
from tests.support.apps import RunningSidecar
from tests.support.search import SAMPLE, multi_match

SPECS: list[Any] = [
    False,
    True,
    "category",
    ["title", "year"],
    "sub*",
    {"includes": ["title", "popularity"]},
    {"excludes": ["body"]},
    {"includes": ["*"], "excludes": ["body", "title"]},
    {"includes": ["t*", "c*"], "excludes": ["title"]},
]


@pytest.mark.parametrize("spec", SPECS, ids=[str(s) for s in SPECS])
async def test_source_filter_matches_es(es: ESTarget, bundled: RunningSidecar, spec: Any) -> None:
    body = multi_match("how do I pay a fine for a lost book", size=10, _source=spec)
    direct = Elasticsearch(es.url).search(index=SAMPLE, body=body).body
    expected = {h["_id"]: h.get("_source", "<absent>") for h in direct["hits"]["hits"]}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{bundled.url}/{SAMPLE}/_search", json=body) as r,
    ):
        assert r.headers["X-Rerank"] in ("applied", "cached")
        got = await r.json()
    for hit in got["hits"]["hits"]:
        if hit["_id"] in expected:
            assert hit.get("_source", "<absent>") == expected[hit["_id"]], hit["_id"]


async def test_source_url_params(es: ESTarget, bundled: RunningSidecar) -> None:
    body = multi_match("how do I pay a fine for a lost book", size=5)
    params = {"_source_includes": "category,lang", "_source_excludes": "lang"}
    direct = (
        Elasticsearch(es.url)
        .perform_request(
            "POST",
            f"/{SAMPLE}/_search",
            params=params,
            body=body,
            headers={"content-type": "application/json"},
        )
        .body
    )
    expected = {h["_id"]: h.get("_source") for h in direct["hits"]["hits"]}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{bundled.url}/{SAMPLE}/_search", json=body, params=params) as r,
    ):
        assert r.headers["X-Rerank"] in ("applied", "cached")
        got = await r.json()
    for hit in got["hits"]["hits"]:
        if hit["_id"] in expected:
            assert hit.get("_source") == expected[hit["_id"]]
