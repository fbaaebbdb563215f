"""``elasticsearch.dsl``, LangChain's Elasticsearch integration and Haystack's Elasticsearch
document store, each run directly against ES and through the sidecar (issue 22).

The libraries are synchronous: each run goes to a thread, so that the in-process sidecar
keeps serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from elasticsearch import Elasticsearch
from elasticsearch.dsl import Search

from tests.conftest import ESTarget
from tests.libraries.conftest import PLAIN, bulk_load, is_non_increasing
from tests.libraries.corpus import WINDOW, articles
from tests.support.apps import RunningSidecar

T = TypeVar("T")
QUERY = "renew a library card at the help desk"
FIELDS = ["title^3", "body"]


async def _run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def _client(url: str) -> Elasticsearch:
    return Elasticsearch(url, request_timeout=60)


# elasticsearch.dsl ------------------------------------------------------------------------


def _dsl_pages(url: str, size: int, pages: int) -> list[list[tuple[str, float, list[str]]]]:
    """Each page of a multi_match through ``Search`` slicing: (id, score, meta keys)."""
    client = _client(url)
    search = Search(using=client, index=PLAIN).query("multi_match", query=QUERY, fields=FIELDS)
    out = []
    for page in range(pages):
        response = search[page * size : (page + 1) * size].execute()
        out.append([(h.meta.id, h.meta.score, sorted(h.meta.to_dict())) for h in response])
    return out


async def test_dsl_pages_neither_lose_nor_repeat_hits_and_scores_never_rise(
    plain_index: str, library_sidecar: RunningSidecar, es: ESTarget
) -> None:
    """Pages of 7 with a window of 10: the second page crosses the window's edge."""
    del plain_index
    direct = await _run(lambda: _dsl_pages(es.url, 7, 3))
    served = await _run(lambda: _dsl_pages(library_sidecar.url, 7, 3))
    direct_ids = [hit[0] for page in direct for hit in page]
    served_ids = [hit[0] for page in served for hit in page]
    assert len(served_ids) == len(set(served_ids)) == len(direct_ids), "no hit repeated"
    assert set(served_ids) == set(direct_ids), "no hit lost"
    assert served_ids[:WINDOW] != direct_ids[:WINDOW], "the window is reranked"
    for page in served:
        assert is_non_increasing(score for _, score, _ in page), page
    # The hits' metadata are ES's keys only (point 5: no _rerank by default).
    assert {k for page in served for *_, keys in page for k in keys} == {
        k for page in direct for *_, keys in page for k in keys
    }


def _low_level(url: str, **body: Any) -> tuple[dict[str, Any], str | None]:
    response = _client(url).search(index=PLAIN, **body)
    return response.body, response.meta.headers.get("X-Rerank")


async def test_dsl_min_score_explain_and_script_fields(
    plain_index: str, library_sidecar: RunningSidecar, es: ESTarget
) -> None:
    """Points 2, 3 and 6 through ``elasticsearch.dsl``'s own request building."""
    del plain_index
    base = Search(index=PLAIN).query("multi_match", query=QUERY, fields=FIELDS)[:12]
    sc = library_sidecar.url

    # 2. A client's min_score holds for every hit it gets.
    floor = 1.0
    body = base.extra(min_score=floor).to_dict()
    answer, header = await _run(lambda: _low_level(sc, **body))
    assert header == "skipped; reason=min_score"
    assert all(h["_score"] >= floor for h in answer["hits"]["hits"])

    # 3. explain: each hit's explanation is the score served, ES's own beneath it.
    body = base.extra(explain=True).to_dict()
    answer, header = await _run(lambda: _low_level(sc, **body))
    assert header == "applied"
    for hit in answer["hits"]["hits"]:
        assert hit["_explanation"]["value"] == pytest.approx(hit["_score"])
        assert hit["_explanation"]["details"], hit["_explanation"]

    # 6. script_fields only: reranked, and the hits have exactly ES's keys (no _source).
    body = base.script_fields(y2={"script": {"source": "doc['year'].value * 2"}}).to_dict()
    direct, _ = await _run(lambda: _low_level(es.url, **body))
    answer, header = await _run(lambda: _low_level(sc, **body))
    assert header == "applied"
    assert [sorted(h) for h in answer["hits"]["hits"]] == [
        sorted(h) for h in direct["hits"]["hits"]
    ]
    assert all("_source" not in h for h in answer["hits"]["hits"])
    assert {h["_id"] for h in answer["hits"]["hits"][WINDOW:]} == {
        h["_id"] for h in direct["hits"]["hits"][WINDOW:]
    }, "past the window: ES's hits"


async def test_dsl_query_string_scoped_to_a_text_field_is_reranked(
    plain_index: str, library_sidecar: RunningSidecar
) -> None:
    """Point 7: a catalogue's title search with a keyword filter."""
    del plain_index
    body = (
        Search(index=PLAIN)
        .query("query_string", query="title:(library card) AND category:library")[:5]
        .to_dict()
    )
    _, header = await _run(lambda: _low_level(library_sidecar.url, **body))
    assert header == "applied"
    body = Search(index=PLAIN).query("query_string", query="category:library")[:5].to_dict()
    _, header = await _run(lambda: _low_level(library_sidecar.url, **body))
    assert header == "skipped; reason=no_query_text"


# LangChain -------------------------------------------------------------------------------

LC = "lc-articles"
LC_ES_SCORES = "lc-articles-es-scores"


def _lc_docs() -> list[dict[str, Any]]:
    return [
        {
            "id": a["id"],
            "text": f"{a['title']}. {a['body']}",
            "metadata": {"category": a["category"]},
        }
        for a in articles()
    ]


@pytest.fixture(scope="session")
async def lc_indices(es: ESTarget) -> tuple[str, str]:
    mapping = {"properties": {"text": {"type": "text"}, "metadata": {"type": "object"}}}
    for name in (LC, LC_ES_SCORES):
        await bulk_load(es.url, name, mapping, _lc_docs())
    return LC, LC_ES_SCORES


def _lc_search(url: str, index: str, k: int) -> list[tuple[str, dict[str, Any], float]]:
    from langchain_elasticsearch import BM25Strategy, ElasticsearchStore

    store = ElasticsearchStore(index, es_url=url, strategy=BM25Strategy())
    found = store.similarity_search_with_score(QUERY, k=k)
    return [(d.page_content, dict(d.metadata), score) for d, score in found]


def _lc_retriever(url: str, index: str, size: int) -> list[dict[str, Any]]:
    from langchain_elasticsearch import ElasticsearchRetriever

    def body(query: str) -> dict[str, Any]:
        return {"query": {"match": {"text": query}}, "size": size}

    retriever = ElasticsearchRetriever(
        index_name=index, body_func=body, content_field="text", es_url=url
    )
    return [dict(d.metadata) for d in retriever.invoke(QUERY)]


async def test_langchain_store_and_retriever_see_what_es_sends(
    lc_indices: tuple[str, str], library_sidecar: RunningSidecar, es: ESTarget
) -> None:
    """Points 1 and 5: LangChain's Documents carry ES's fields only, scores never rise."""
    sc = library_sidecar.url
    direct = await _run(lambda: _lc_search(es.url, LC, 15))
    served = await _run(lambda: _lc_search(sc, LC, 15))
    assert [m for _, m, _ in served] != [], served
    assert sorted(str(m) for _, m, _ in served) == sorted(str(m) for _, m, _ in direct)
    assert is_non_increasing(s for *_, s in served)
    assert [t for t, *_ in served] != [t for t, *_ in direct], "reranked"
    direct_meta = await _run(lambda: _lc_retriever(es.url, LC, 12))
    served_meta = await _run(lambda: _lc_retriever(sc, LC, 12))
    assert all("_rerank" not in m for m in served_meta)
    assert {frozenset(m) for m in served_meta} == {frozenset(m) for m in direct_meta}
    assert is_non_increasing(m["_score"] for m in served_meta)
    assert {m["_id"] for m in served_meta} == {m["_id"] for m in direct_meta}


async def test_langchain_score_threshold_holds_with_es_scores(
    lc_indices: tuple[str, str], library_sidecar: RunningSidecar, es: ESTarget
) -> None:
    """Point 4: a threshold tuned on BM25 keeps exactly as many documents through the
    sidecar on an index served with ``score_mode: es_scores`` (docs/scores.md): the model's
    best ones, from the same window."""
    del lc_indices

    def scored(url: str) -> list[tuple[str, float]]:
        from langchain_elasticsearch import BM25Strategy, ElasticsearchStore

        store = ElasticsearchStore(LC_ES_SCORES, es_url=url, strategy=BM25Strategy())
        return [(d.page_content, s) for d, s in store.similarity_search_with_score(QUERY, k=10)]

    direct = await _run(lambda: scored(es.url))
    served = await _run(lambda: scored(library_sidecar.url))
    floor = sorted(s for _, s in direct)[len(direct) // 2]  # tuned directly on BM25
    kept_direct = [t for t, s in direct if s >= floor]
    kept_served = [t for t, s in served if s >= floor]
    assert kept_direct and len(kept_served) == len(kept_direct)
    assert {t for t, _ in served} == {t for t, _ in direct}
    assert sorted(s for _, s in served) == sorted(s for _, s in direct), "ES's scores"
    assert [t for t, _ in served] != [t for t, _ in direct], "in the model's order"


# Haystack --------------------------------------------------------------------------------

HS = "hs-articles"


@pytest.fixture(scope="session")
async def hs_index(es: ESTarget) -> str:
    from haystack import Document
    from haystack.document_stores.types import DuplicatePolicy
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    def load() -> None:
        store = ElasticsearchDocumentStore(hosts=es.url, index=HS)
        store.client.options(ignore_status=404).indices.delete(index=HS)
        store = ElasticsearchDocumentStore(hosts=es.url, index=HS)
        docs = [
            Document(
                id=a["id"], content=f"{a['title']}. {a['body']}", meta={"category": a["category"]}
            )
            for a in articles()
        ]
        store.write_documents(docs, policy=DuplicatePolicy.OVERWRITE)
        store.client.indices.refresh(index=HS)

    await _run(load)
    return HS


def _haystack(url: str, top_k: int) -> list[tuple[str, float, list[str]]]:
    """What ``ElasticsearchBM25Retriever`` gets, through the store's own paging and
    deserialising (``_search_documents``): its body, but for ``fields``, which it leaves to
    ES's ``index.query.default_field: *``, a default noida-db does not implement (a
    multi_match without fields matches nothing there)."""
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    store = ElasticsearchDocumentStore(hosts=url, index=HS)
    match = {"query": QUERY, "fuzziness": "AUTO", "type": "most_fields", "operator": "OR"}
    query = {"bool": {"must": [{"multi_match": {**match, "fields": ["content"]}}]}}
    docs = store._search_documents(size=top_k, query=query)
    return [(d.id, float(d.score or 0.0), sorted(d.meta)) for d in docs]


async def test_haystack_bm25_retriever(
    hs_index: str, library_sidecar: RunningSidecar, es: ESTarget
) -> None:
    """Points 1 and 5 through Haystack's document store: the same documents' metadata,
    scores never rise (so neither do ``scale_score``'s, a monotone map of them), and a
    top_k past the window keeps ES's hits below it."""
    del hs_index
    top_k = WINDOW + 5
    direct = await _run(lambda: _haystack(es.url, top_k))
    served = await _run(lambda: _haystack(library_sidecar.url, top_k))
    assert len(served) == len(direct) == top_k
    assert {d for d, *_ in served} == {d for d, *_ in direct}
    assert [d for d, *_ in served][WINDOW:] == [d for d, *_ in direct][WINDOW:]
    assert [d for d, *_ in served][:WINDOW] != [d for d, *_ in direct][:WINDOW], "reranked"
    assert is_non_increasing(s for _, s, _ in served), served
    assert {k for *_, keys in served for k in keys} == {k for *_, keys in direct for k in keys}
