"""Property tests for the parts of the rerank path that take untrusted input, beyond the
query-text extractor and single-search planning (tests/rerank/test_plan.py):

* ``_msearch`` NDJSON parsing and per-search rewriting, for any bytes and any JSON lines;
* rewriting an ES response, for any shape of hits, scores and page;
* document text and ``_source`` filtering, for any ``_source``;
* the ``from``/``size`` a search may carry, including ones ES itself refuses.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from sidecar.config import LimitsTuning, RerankConfig
from sidecar.errors import IllegalArgument
from sidecar.http.body import parse_ndjson
from sidecar.jsonutil import dumps, loads
from sidecar.rerank.index_config import IndexRules, ScoreOptions
from sidecar.rerank.plan import SearchPlan, plan_search
from sidecar.rerank.respond import hits_of, rewrite
from sidecar.rerank.source_filter import apply_source_filter, parse_source_spec

CFG = RerankConfig(window=20)
LIMITS = LimitsTuning(max_window=100)
DOCS = IndexRules(CFG)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
queries = st.sampled_from(
    [
        {"match": {"title": "maps"}},
        {"multi_match": {"query": "rare maps", "fields": ["title"]}},
        {"bool": {"must": [{"match": {"body": "x"}}], "filter": {"term": {"a": 1}}}},
        {"match_all": {}},
    ]
)
search_bodies = st.fixed_dictionaries(
    {},
    optional={
        "query": queries | json_values,
        "size": st.integers(-5, 2**40) | json_values,
        "from": st.integers(-5, 200) | json_values,
        "sort": st.sampled_from(["_score", [{"_score": "desc"}], [{"year": "asc"}]]) | json_values,
        "_source": st.sampled_from([False, True, ["title"], {"excludes": ["body"]}]) | json_values,
        "rerank": st.fixed_dictionaries(
            {}, optional={"window": st.integers(-1, 200), "query": st.text(max_size=8)}
        )
        | json_values,
        "aggs": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_ndjson_parser_never_raises(data: bytes) -> None:
    pairs = parse_ndjson(data)
    assert pairs is None or all(len(p) == 2 for p in pairs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(json_values, search_bodies | json_values), min_size=1, max_size=4))
def test_msearch_lines_round_trip_and_plan_per_search(pairs: list[tuple[Any, Any]]) -> None:
    """Whatever the sub-searches are, the NDJSON the sidecar builds for ES parses back into
    the same headers and the planned bodies; planning raises only IllegalArgument (400)."""
    data = b"".join(dumps(h) + b"\n" + dumps(b) + b"\n" for h, b in pairs)
    parsed = parse_ndjson(data)
    assert parsed == [(loads(dumps(h)), loads(dumps(b))) for h, b in pairs]
    lines = []
    for header, body in parsed:
        original = copy.deepcopy(body)
        try:
            plan = plan_search(body, MultiDict(), CFG, DOCS, "idx", "on", limits=LIMITS)
        except IllegalArgument:
            continue
        assert body == original, "planning must not mutate the sub-search"
        lines += [dumps(header), dumps(plan.body if plan.body is not None else body)]
        if plan.rerank:
            assert plan.body is not None and "rerank" not in plan.body
            assert plan.window <= LIMITS.max_window
            assert 0 <= plan.from_ < plan.window and 0 <= plan.size <= 2**31 - 1
    rebuilt = parse_ndjson(b"\n".join(lines) + b"\n") if lines else []
    assert rebuilt is not None and len(rebuilt) == len(lines) // 2


@settings(max_examples=300, deadline=None)
@given(search_bodies, st.dictionaries(st.sampled_from(["size", "from", "q"]), st.text(max_size=25)))
def test_paging_params_are_either_reranked_sanely_or_left_to_es(
    body: dict[str, Any], params: dict[str, str]
) -> None:
    try:
        plan = plan_search(body, MultiDict(params), CFG, DOCS, "idx", "on", limits=LIMITS)
    except IllegalArgument:
        return
    if plan.rerank:
        assert plan.body is not None
        # What goes to ES serializes (orjson refuses integers past 64 bits).
        dumps(plan.body)
        assert plan.body["from"] == 0
        assert plan.body["size"] >= plan.window


hits = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "_index": json_values,
            "_id": json_values,
            "_score": json_values,
            "_source": json_values,
        },
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    hits,
    st.integers(0, 30),
    st.integers(0, 15),
    st.integers(1, 20),
    st.sampled_from(["replace", "fusion"]),
    st.none() | st.floats(-1, 1),
    st.data(),
)
def test_rewrite_never_raises_and_keeps_every_hit_once(
    es_hits: list[dict[str, Any]],
    from_: int,
    size: int,
    window: int,
    mode: str,
    min_score: float | None,
    data: st.DataObject,
) -> None:
    body: dict[str, Any] = {"hits": {"hits": copy.deepcopy(es_hits), "max_score": 1.0}}
    plan = SearchPlan(
        None,
        {},
        DOCS.resolve("idx"),
        window=window,
        from_=from_,
        size=size,
        query_text="q",
        annotate="_rerank",
    )
    n = min(window, len(es_hits))
    scores = data.draw(
        st.none() | st.lists(st.floats(-10, 10, allow_nan=False), min_size=n, max_size=n)
    )
    opts = ScoreOptions(mode=mode, min_score=min_score, boost_fields=(("pop", 0.5),))
    rewrite(body, plan, scores, opts, {"status": "applied" if scores else "fallback"})
    out = hits_of(body)
    assert out is not None
    assert len(out) <= size
    if scores is None or min_score is None:
        expected = len(es_hits[from_ : from_ + size])
        assert len(out) == expected
    for hit in out:
        if scores is not None and "rerank_score" in hit.get("_rerank", {}):
            assert math.isfinite(hit["_score"])
    if scores is not None:
        # Every score served is finite and none rises down the page, across the edge too.
        served = [hit["_score"] for hit in out]
        assert all(math.isfinite(s) for s in served)
        assert all(a >= b for a, b in itertools.pairwise(served)), served
    dumps(body)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_document_text_and_source_filter_never_raise(source: Any, spec: Any) -> None:
    text = DOCS.doc_text("idx", None).text(source)
    assert isinstance(text, str)
    flt = parse_source_spec(spec)
    if flt is not None:
        hit = {"_source": copy.deepcopy(source)}
        apply_source_filter(hit, flt)
        dumps(hit)
