"""A model too slow for the budget is known before the first search: the warm-up's passes
teach its cost, /_sidecar/ready and the metrics say what fits and warn, and every search
is answered in ES's time (``budget``), never after waiting out the budget (``timeout``)."""

from __future__ import annotations

import aiohttp

from tests.conftest import ESTarget
from tests.support.apps import running_sidecar
from tests.support.search import SAMPLE, base_config, multi_match

#: Less than the bundled model takes for min_window pairs on any machine.
BUDGET_MS = 2


async def test_a_model_too_slow_for_the_budget_is_said_and_never_waited_for(
    es: ESTarget, sample_index: str
) -> None:
    config = base_config(
        es.url,
        rerank={"window": 50, "budget_ms": BUDGET_MS, "cache": {"enabled": False}},
        # What passes cost is measured at warm-up, as in production.
        tuning={"worker": {"pass_overhead_tokens": None}},
    )
    async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:
        async with s.get(f"{sc.url}/_sidecar/ready") as r:
            ready = await r.json()
        assert r.status == 200 and ready["reranking"] is True
        capacity = ready["model"]["capacity"]
        assert capacity["window_in_budget"] < 10 and capacity["pairs_per_s"] > 0
        assert capacity["budget_ms"] == BUDGET_MS and capacity["window"] == 50
        warnings = ready["model"]["warnings"]
        assert any("fewer than rerank.min_window" in w and "a GPU" in w for w in warnings)
        # From the very first search on: ES's order, at once, and the reason says why.
        for query in ("renew a book", "library card", "printer not working"):
            async with s.post(f"{sc.url}/{SAMPLE}/_search", json=multi_match(query)) as r:
                assert r.status == 200
                assert r.headers["X-Rerank"] == "fallback; reason=budget"
        async with s.get(f"{sc.url}/_sidecar/metrics") as r:
            text = await r.text()
        assert "rerank_sidecar_model_pairs_per_second" in text
        assert "rerank_sidecar_capacity_window" in text
