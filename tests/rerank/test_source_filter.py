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


def test_widening_keeps_the_clients_view_and_adds_the_text_fields() -> None:
    from sidecar.rerank.source_filter import SourceFilter, hides_any

    needed = ("title", "body")
    assert not hides_any(SourceFilter(), needed)
    assert hides_any(SourceFilter(enabled=False), needed)
    assert hides_any(SourceFilter(includes=("category",)), needed)
    assert not hides_any(SourceFilter(includes=("t*", "body")), needed)
    assert hides_any(SourceFilter(excludes=("body",)), needed)
    assert not hides_any(SourceFilter(excludes=("blob",)), needed)
    # _source: false asks for the text fields only, never the whole document.
    assert SourceFilter(enabled=False).widened(needed).as_spec() == {"includes": ["title", "body"]}
    widened = SourceFilter(includes=("category",), excludes=("body", "blob")).widened(needed)
    assert widened.as_spec() == {"includes": ["category", "title", "body"], "excludes": ["blob"]}
    assert SourceFilter(excludes=("body",)).widened(needed).as_spec() is True
    assert SourceFilter(enabled=False).widened(needed).as_params() == [
        ("_source_includes", "title,body")
    ]


def test_stored_fields_without_source_means_no_source() -> None:
    from multidict import MultiDict

    from sidecar.config import RerankConfig
    from sidecar.rerank.index_config import IndexRules
    from sidecar.rerank.plan import plan_search

    cfg = RerankConfig(window=10)
    body = {"query": {"match": {"title": "x"}}, "stored_fields": ["pk"]}
    plan = plan_search(body, MultiDict(), cfg, IndexRules(cfg), "i", "on")
    assert plan.rerank and plan.body is not None
    assert plan.body["_source"] == {"includes": list(cfg.default_fields)}
    assert not plan.source_filter.enabled, "the client gets no _source, as from ES"
    bodyless = plan_search(
        None, MultiDict({"q": "x", "_source": "false"}), cfg, IndexRules(cfg), "i", "on"
    )
    assert bodyless.rerank and bodyless.body is None
    assert ("size", "10") in bodyless.set_params and "_source" in bodyless.drop_params
