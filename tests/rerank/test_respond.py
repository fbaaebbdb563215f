"""Response rewriting: replace vs fusion vs es_scores, the window's edge, min_score,
explanations, the annotation switch, paging cuts."""

from __future__ import annotations

import copy
import itertools
import json
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


def _plan(
    from_: int = 0, size: int = 10, window: int = 5, annotate: bool = True, **extra: Any
) -> Any:
    cfg = RerankConfig(window=window, annotate=annotate)
    body = {"query": {"match": {"title": "x"}}, "from": from_, "size": size, **extra}
    return plan_search(body, MultiDict(), cfg, IndexRules(cfg), "i", "on")


def _scores(body: dict[str, Any]) -> list[float]:
    return [h["_score"] for h in body["hits"]["hits"]]


def _non_increasing(values: list[float]) -> bool:
    return all(a >= b for a, b in itertools.pairwise(values))


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
    # Past the window: below the lowest reranked score (0.1), in ES's order.
    past = [h["_score"] for h in body["hits"]["hits"][5:]]
    assert all(score < 0.1 for score in past) and past == sorted(past, reverse=True)
    assert _non_increasing(_scores(body))
    assert body["aggregations"] == {"a": {"value": 1}}
    assert body["_rerank"] == {"status": "applied"}


def test_annotations_are_opt_in() -> None:
    """By default the answer has exactly ES's keys; ``rerank.annotate`` or a request's
    ``"rerank": {"explain": true}`` adds the annotations, and ``annotate_field: null``
    never."""
    body = _es_body(6)
    keys = (set(body), [set(h) for h in body["hits"]["hits"]])
    rewrite(body, _plan(annotate=False), [0.1] * 5, ScoreOptions(), {"status": "applied"})
    assert (set(body), [set(h) for h in body["hits"]["hits"]]) == keys
    asked = _plan(annotate=False, rerank={"explain": True})
    body = _es_body(6)
    rewrite(body, asked, [0.1] * 5, ScoreOptions(), {"status": "applied"})
    assert body["_rerank"] == {"status": "applied"}
    assert all("_rerank" in h for h in body["hits"]["hits"])
    cfg = RerankConfig(window=5, annotate=True, annotate_field=None)
    request = {"query": {"match": {"title": "x"}}, "rerank": {"explain": True}}
    never = plan_search(request, MultiDict(), cfg, IndexRules(cfg), "i", "on")
    assert never.annotate is None


@pytest.mark.parametrize("mode", ["replace", "fusion", "es_scores"])
@pytest.mark.parametrize("k", [5, 3])
def test_score_never_rises_down_a_page_across_the_window_edge(mode: str, k: int) -> None:
    """Window 5 (or a budget that allowed only 3), page of 8: the hits past the edge sit
    below every reranked score, in ES's order, in every score mode."""
    scores = [0.0186, 0.5, -0.3, 0.9, 0.2][:k]
    body = _es_body(8)
    es_order = [h["_id"] for h in body["hits"]["hits"]]
    rewrite(body, _plan(size=8), scores, ScoreOptions(mode=mode), {"status": "applied"})  # type: ignore[arg-type]
    got = _scores(body)
    assert _non_increasing(got), got
    ids = [h["_id"] for h in body["hits"]["hits"]]
    assert ids[k:] == es_order[k:] and sorted(ids) == sorted(es_order)
    if mode == "es_scores":
        assert got == [10.0 - i for i in range(8)], "ES's scores, in the reranked order"
    assert body["hits"]["max_score"] == got[0]


def test_es_scores_keeps_es_scale_in_the_reranked_order() -> None:
    body = _es_body(5)
    rewrite(body, _plan(), [0.1, 0.5, 0.9, 0.2, 0.3], ScoreOptions(mode="es_scores"), {})
    assert [h["_id"] for h in body["hits"]["hits"]] == ["d2", "d1", "d4", "d3", "d0"]
    assert _scores(body) == [10.0, 9.0, 8.0, 7.0, 6.0]


def test_sort_values_follow_the_score_served() -> None:
    body = _es_body(6)
    for hit in body["hits"]["hits"]:
        hit["sort"] = [hit["_score"]]
    plan = _plan(sort=["_score"])
    rewrite(body, plan, [0.1, 0.5, 0.9, 0.2, 0.3], ScoreOptions(), {})
    assert all(h["sort"] == [h["_score"]] for h in body["hits"]["hits"])


@pytest.mark.parametrize("mode", ["replace", "fusion", "es_scores"])
def test_explanations_explain_the_score_served(mode: str) -> None:
    body = _es_body(7)
    own = {"value": 1.0, "description": "weight(title:x)", "details": []}
    for hit in body["hits"]["hits"]:
        hit["_explanation"] = {**own, "value": hit["_score"]}
    plan = _plan(annotate=False, explain=True)
    opts = ScoreOptions(mode=mode)  # type: ignore[arg-type]
    rewrite(body, plan, [0.1, 0.5, 0.9, 0.2, 0.3], opts, {}, "tiny-model")
    for hit in body["hits"]["hits"]:
        top = hit["_explanation"]
        assert top["value"] == hit["_score"]
        assert "tiny-model" in top["description"]
        assert set(top) == {"value", "description", "details"}
        es_own = top["details"][-1]
        assert es_own["description"] == "weight(title:x)", "ES's own, kept whole"
    assert f"rerank.score_mode: {mode}" in body["hits"]["hits"][0]["_explanation"]["description"]
    assert "not reranked" in body["hits"]["hits"][6]["_explanation"]["description"]


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
    with pytest.raises(ConfigError, match=r"tuning\.limits\.max_window \(500\)"):
        build_config({"rerank": {"window": 900}, "tuning": {"limits": {"max_window": 500}}})


# filter_path, pretty output, learned result windows, _msearch lines, duplicate keys ------

FILTER_DOC = {
    "_shards": {"failed": 0, "total": 1},
    "hits": {
        "hits": [{"_index": "u", "_id": "1", "_score": 0.3, "_source": {"n": [], "title": "t"}}],
        "max_score": 0.3,
        "total": {"relation": "eq", "value": 1},
    },
    "took": 0,
}


@pytest.mark.parametrize(
    ("filter_path", "expected"),
    [
        # Each as noida-db and osmem-server answer it (and ES's FilterPath semantics).
        ("nothing", {}),
        ("hits.hits._id", {"hits": {"hits": [{"_id": "1"}]}}),
        ("hits.hits._source.arr.x", {}),
        ("-hits.hits._source.arr.x", FILTER_DOC),
        (
            "hits.hits._source,-hits.hits._source.title",
            {"hits": {"hits": [{"_source": {"n": []}}]}},
        ),
        ("hits.hits._source.n", {"hits": {"hits": [{"_source": {"n": []}}]}}),
        ("hi*.total", {"hits": {"total": {"relation": "eq", "value": 1}}}),
        ("-hits", {"_shards": {"failed": 0, "total": 1}, "took": 0}),
        ("**.title", {"hits": {"hits": [{"_source": {"title": "t"}}]}}),
        ("hits.hits.**", {"hits": {"hits": FILTER_DOC["hits"]["hits"]}}),
        ("took,hits.total", {"hits": {"total": {"relation": "eq", "value": 1}}, "took": 0}),
    ],
)
def test_filter_path_like_es(filter_path: str, expected: Any) -> None:
    from sidecar.rerank.filter_path import parse_filter_path

    assert parse_filter_path(filter_path).apply(FILTER_DOC) == expected


def test_filter_path_wants_hits() -> None:
    from sidecar.rerank.filter_path import parse_filter_path

    for fp in ("hits.hits._id", "hits.hits._source.title", "-hits.hits._source", "**._id"):
        assert parse_filter_path(fp).wants_below(("hits", "hits")), fp
    for fp in ("aggregations", "hits.total", "took", "-hits.hits", "-hits"):
        assert not parse_filter_path(fp).wants_below(("hits", "hits")), fp


def test_pretty_is_written_as_es_writes_it() -> None:
    from sidecar.rerank.render import pretty, render

    out = pretty({"a": {"b": [1, {"c": "x"}], "e": {}, "f": []}, "g": 1.5})
    assert out == (
        b'{\n  "a" : {\n    "b" : [\n      1,\n      {\n        "c" : "x"\n      }\n    ],\n'
        b'    "e" : { },\n    "f" : [ ]\n  },\n  "g" : 1.5\n}\n'
    )
    assert render({"a": 1}, b'{"a":2}') == b'{"a":1}'
    assert render({"a": 1}, b'{\n  "a" : 2\n}\n') == b'{\n  "a" : 1\n}\n'


def test_a_document_too_deep_for_orjson_is_still_written() -> None:
    from sidecar.rerank.render import compact

    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(300):
        deep = {"n": deep}
    data = compact(deep)
    assert data is not None and json.loads(data) == deep


def test_result_windows_are_learned_bounded_and_forgotten() -> None:
    from sidecar.rerank.windows import IndexFacts, refusal

    error = {
        "error": {
            "root_cause": [
                {
                    "type": "illegal_argument_exception",
                    "reason": "Result window is too large, from + size must be less than or "
                    "equal to: [5] but was [20]. See the scroll api...",
                }
            ],
            "failed_shards": [
                {"index": "small", "reason": {"reason": "Result window is too large"}}
            ],
        },
        "status": 400,
    }
    assert refusal(error) == (5, ["small"])
    assert refusal({"hits": {"hits": []}}) is None
    now = [0.0]
    windows = IndexFacts(max_entries=2, ttl_s=10, timer=lambda: now[0])
    assert windows.learn("small*", error, 20)
    assert windows.limit("small*") == 5 and windows.limit("big,small") == 5
    assert windows.limit("other") is None
    for name in ("a", "b", "c"):
        windows.learn(name, error, 20)
    learned = ("small*", "small", "a", "b", "c")
    assert sum(windows.limit(name) is not None for name in learned) == 2, "bounded"
    now[0] = 11.0
    assert windows.limit("c") is None, "forgotten: a raised limit is seen again"


def test_msearch_lines_keep_every_byte_they_do_not_rewrite() -> None:
    from sidecar.http.body import NdjsonLines

    data = b'{"index":"a"}\r\n{"query" : {}}\r\n\n{ }\n{"size":1}'
    lines = NdjsonLines.parse(data)
    assert lines is not None and len(lines.pairs) == 2
    assert lines.replaced({}) == data
    assert lines.replaced({1: b'{"size":2}'}) == data.replace(b'{"size":1}', b'{"size":2}')
    assert lines.replaced({0: b"{}"}) == data.replace(b'{"query" : {}}\r', b"{}\r")


def test_duplicate_keys_are_seen_at_any_depth() -> None:
    from sidecar.http.body import has_duplicate_keys

    assert has_duplicate_keys(b'{"a": 1, "a": 2}')
    assert has_duplicate_keys(b'{"q": {"bool": {"filter": 1, "filter": 2}}}')
    assert has_duplicate_keys(b'[{"x": 1}, {"y": {"z": 1, "z": 1}}]')
    assert not has_duplicate_keys(b'{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]}')
