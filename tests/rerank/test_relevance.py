"""Relevance through the sidecar on the judged MS MARCO slice (../shared/data).

With the bundled MiniLM and window 20, nDCG@10 over the 43 judged queries must reach 0.67
(BM25 alone: 0.575; the data folder's README gives 0.673 for this pipeline). A pipeline that
misaligns scores and hits falls below BM25. Deterministic, so it is a test, not a benchmark.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import aiohttp
import pytest

from devtools.eval.ranking import ndcg_at
from es_integration.corpus import load_beir
from tests.conftest import ESTarget
from tests.support.apps import running_sidecar
from tests.support.search import base_config

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "msmarco-dl-5k"


@pytest.fixture(scope="module")
def msmarco(es: ESTarget) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    if not DATA.is_dir():
        pytest.fail(f"the judged set is missing: {DATA} (CI provides ../shared beside the clone)")
    ds = load_beir(es.url, DATA, "msmarco-dl")
    return ds.judged_queries, ds.qrels


async def test_ndcg_through_the_sidecar(
    es: ESTarget, msmarco: tuple[dict[str, str], dict[str, dict[str, int]]]
) -> None:
    queries, qrels = msmarco
    assert len(queries) == 43
    bm25: list[float] = []
    reranked: list[float] = []
    config = base_config(es.url, rerank={"window": 20, "budget_ms": 60_000})
    async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:
        for qid, text in queries.items():
            body = {
                "query": {"multi_match": {"query": text, "fields": ["title", "text"]}},
                "size": 10,
                "_source": False,
            }
            async with s.post(f"{es.url}/msmarco-dl/_search", json=body) as r:
                direct = [h["_id"] for h in (await r.json())["hits"]["hits"]]
            async with s.post(f"{sc.url}/msmarco-dl/_search", json=body) as r:
                assert r.headers["X-Rerank"] == "applied", await r.text()
                via = [h["_id"] for h in (await r.json())["hits"]["hits"]]
            bm25.append(ndcg_at(direct, qrels[qid]))
            reranked.append(ndcg_at(via, qrels[qid]))
    print(f"nDCG@10 BM25 {statistics.fmean(bm25):.4f}, reranked {statistics.fmean(reranked):.4f}")
    assert statistics.fmean(bm25) == pytest.approx(0.575, abs=0.002)
    assert statistics.fmean(reranked) >= 0.67
