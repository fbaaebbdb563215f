"""Response rewriting: replace vs fusion, min_score, the annotation switch, paging cuts."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from multidict import MultiDict

from sidecar.config import FusionConfig, RerankConfig, build_config
from sidecar.errors import ConfigError
from sidecar.rerank.index_config import IndexRules, ScoreOptions
from sidecar.rerank.plan import plan_search
from sidecar.rerank.respond import fused_scores, rewrite


def _es_body(n: int) -> dict[str, Any]:
    hits = [
        {"_index": "i", "_id": f"d{i}", "_score": 10.0 - i, "_source": {"title": f"t{i}", "pop": i}}
        for i in range(n)
    ]
    return {
        "took": 3,
        "hits": {"total": {"value": n, "relation": "eq"}, "max_score": 10.0, "hits": hits},
        "aggregations": {"a": {"value": 1}},
    }


def _plan(from_: int = 0, size: int = 10, window: int = 5) -> Any:
    cfg = RerankConfig(window=window)
    body = {"query": {"match": {"title": "x"}}, "from": from_, "size": size}
    return plan_search(body, MultiDict(), cfg, IndexRules(cfg), "i", "on")


def test_replace_reorders_window_and_keeps_the_rest() -> None:
    body = _es_body(8)
    scores = [0.1, 0.5, 0.9, 0.2, 0.3]
    rewrite(body, _plan(), scores, ScoreOptions(), {"status": "applied"})
    ids = [h["_id"] for h in body["hits"]["hits"]]
    assert ids == ["d2", "d1", "d4", "d3", "d0", "d5", "d6", "d7"]
    assert body["hits"]["max_score"] == 0.9
    assert body["hits"]["hits"][0]["_rerank"] == {
        "original_rank": 3,
        "original_score": 8.0,
        "rerank_score": 0.9,
        "rank": 1,
    }
    assert body["hits"]["hits"][5]["_rerank"] == {"original_rank": 6, "reranked": False}
    assert body["hits"]["hits"][5]["_score"] == 5.0
    assert body["aggregations"] == {"a": {"value": 1}}
    assert body["_rerank"] == {"status": "applied"}


def test_annotation_can_be_turned_off() -> None:
    body = _es_body(6)
    rewrite(body, _plan(), [0.1] * 5, ScoreOptions(annotate_field=None), {"status": "applied"})
    assert "_rerank" not in body
    assert all("_rerank" not in h for h in body["hits"]["hits"])


def test_fusion_blends_bm25_and_boost_fields() -> None:
    window = _es_body(3)["hits"]["hits"]
    opts = ScoreOptions(
        mode="fusion",
        fusion=FusionConfig(rerank_weight=0.5, bm25_weight=0.5),
        boost_fields=(("pop", 1.0),),
    )
    fused = fused_scores(window, [0.2, 0.2, 0.2], opts)
    # bm25 normalised by the window max (10): 1.0, 0.9, 0.8; pop normalised by max (2).
    assert fused == pytest.approx([0.1 + 0.5 + 0.0, 0.1 + 0.45 + 0.5, 0.1 + 0.4 + 1.0])
    body = _es_body(3)
    rewrite(body, _plan(window=3), [0.2, 0.2, 0.2], opts, {"status": "applied"})
    assert [h["_id"] for h in body["hits"]["hits"]] == ["d2", "d1", "d0"]
    assert body["hits"]["hits"][0]["_rerank"]["rerank_score"] == 0.2


def test_min_score_drops_weak_hits_of_the_window() -> None:
    body = _es_body(5)
    rewrite(
        body,
        _plan(),
        [0.9, 0.05, 0.5, 0.01, 0.3],
        ScoreOptions(min_score=0.1),
        {"status": "applied"},
    )
    assert [h["_id"] for h in body["hits"]["hits"]] == ["d0", "d2", "d4"]


def test_fallback_cuts_the_page_in_es_order() -> None:
    body = _es_body(12)
    original = copy.deepcopy(body["hits"]["hits"])
    rewrite(body, _plan(from_=3, size=4), None, ScoreOptions(), {"status": "fallback"})
    assert body["hits"]["hits"] == [
        {**h, "_rerank": {"original_rank": i + 4, "reranked": False}} if i + 3 >= 5 else h
        for i, h in enumerate(original[3:7])
    ]


def test_rerank_budget_must_differ_from_es_read_timeout() -> None:
    with pytest.raises(ConfigError, match=r"must differ from es\.timeouts\.read_s"):
        build_config({"rerank": {"budget_ms": 2000}, "es": {"timeouts": {"read_s": 2}}})
    with pytest.raises(ConfigError, match="window"):
        build_config({"rerank": {"window": 900, "max_window": 500}})
