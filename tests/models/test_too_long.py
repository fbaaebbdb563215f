"""A query (with its instruction) longer than model.max_length is a problem of that
request, not a fault of the model: the rerank API answers 400 naming the cause, a search
keeps ES order with a reason, and the breaker never counts it."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from devtools.fakes import FaultES
from sidecar.keys import ADMISSION
from tests.support.apps import running_sidecar
from tests.support.search import multi_match

LONG_QUERY = " ".join(["capital of France and Germany"] * 40)


async def test_a_query_too_long_for_the_model_is_the_requests_problem(qwen_dir: Path) -> None:
    async with FaultES(hits=20) as es:
        config = {
            "es": {"url": es.url},
            "model": {
                "name": str(qwen_dir),
                "max_length": 160,
                "instruction": "Judge relevance",
                "self_test": False,
            },
            "rerank": {"breaker": {"fail_max": 2}, "budget_ms": 120_000},
        }
        async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:
            for _ in range(4):
                async with s.post(f"{sc.url}/i/_search", json=multi_match(LONG_QUERY)) as r:
                    assert r.status == 200
                    assert r.headers["X-Rerank"] == "skipped; reason=query_too_long"
            breaker = sc.app[ADMISSION].breaker
            assert breaker.state == "closed" and breaker.fail_counter == 0
            api = {"query": LONG_QUERY, "documents": ["Paris", "Berlin"]}
            async with s.post(f"{sc.url}/_sidecar/v1/rerank", json=api) as r:
                body = await r.json()
                assert r.status == 400
                assert body["error"]["type"] == "illegal_argument_exception"
                assert "model.max_length" in body["error"]["reason"]
            # A query that fits is reranked as usual.
            async with s.post(f"{sc.url}/i/_search", json=multi_match("capital")) as r:
                assert r.headers["X-Rerank"] == "applied"
