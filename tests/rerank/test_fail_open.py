"""Fail-open: a model that is slow, hangs, raises, answers garbage or is overloaded never
breaks search. The client gets 200 with the ES order and the reason in X-Rerank; the breaker
opens, half-opens and closes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from elasticsearch import Elasticsearch

from devtools.fakes import FaultModel
from sidecar.admission.controller import MAX_IN_FLIGHT_PAIRS, PART_HITS
from sidecar.admission.queue import MAX_WAITING
from sidecar.keys import ADMISSION
from tests.conftest import ESTarget
from tests.support.apps import TurnedClock, own_tasks, running_sidecar, settled
from tests.support.search import GENEROUS_BUDGET_MS, SAMPLE, base_config, multi_match

QUERY = "library card renew borrow books online account"


def _config(es_url: str, fake: FaultModel, **over: Any) -> dict[str, Any]:
    return base_config(
        es_url,
        model={"name": fake.url},
        # The annotations are on: each answer's _rerank must agree with its X-Rerank.
        rerank={
            "budget_ms": 300,
            "breaker": {"fail_max": 3, "reset_timeout_s": 0.5},
            "annotate": True,
        },
        tuning={"remote": {"read_timeout_s": 5.0}},
        **over,
    )


async def _search(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    async with aiohttp.ClientSession() as s, s.post(f"{url}/{SAMPLE}/_search", json=body) as resp:
        return resp.status, await resp.json(), resp.headers.get("X-Rerank", "")


def _ids(body: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in body["hits"]["hits"]]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("hang", "timeout"),
        ("slow", "timeout"),
        ("error", "error"),
        ("nan", "error"),
        ("wrong_count", "error"),
        ("overloaded", "overloaded"),
    ],
)
async def test_model_faults_fall_back_to_es_order(
    es: ESTarget, sample_index: str, fake_reranker: FaultModel, mode: str, reason: str
) -> None:
    fake_reranker.mode, fake_reranker.delay_s = mode, 1.0
    direct = Elasticsearch(es.url).search(index=SAMPLE, body=multi_match(QUERY, size=10)).body
    # The remote client's own read timeout is out of reach: a timeout can only be the
    # search's budget (300 ms) giving up on the model, never the model's answer or its
    # connection timing out (a slow model that was waited for would be "applied").
    config = _config(es.url, fake_reranker)
    config["tuning"]["remote"]["read_timeout_s"] = 3600.0
    async with running_sidecar(config) as sc:
        status, body, header = await _search(sc.url, multi_match(QUERY, size=10))
    assert status == 200
    assert header == f"fallback; reason={reason}"
    assert body["_rerank"] == {"status": "fallback", "reason": reason}
    assert _ids(body) == _ids(direct)
    assert [h["_score"] for h in body["hits"]["hits"]] == [
        h["_score"] for h in direct["hits"]["hits"]
    ]
    assert fake_reranker.calls == 1


async def test_breaker_opens_half_opens_and_closes(
    es: ESTarget, sample_index: str, fake_reranker: FaultModel
) -> None:
    fake_reranker.mode = "error"
    config = _config(es.url, fake_reranker)
    # The faults here are errors, not slowness; the last, healthy trial must be "applied".
    config["rerank"]["budget_ms"] = GENEROUS_BUDGET_MS
    # The breaker's clock is turned by the test: the reset timeout passes when it says.
    config["rerank"]["breaker"]["reset_timeout_s"] = 60
    clock = TurnedClock()
    async with running_sidecar(config, breaker_clock=clock) as sc:
        breaker = sc.app[ADMISSION].breaker
        headers = [(await _search(sc.url, multi_match(QUERY)))[2] for _ in range(3)]
        assert headers == ["fallback; reason=error"] * 3
        assert breaker.state == "open"

        calls = fake_reranker.calls
        for _ in range(5):
            status, _, header = await _search(sc.url, multi_match(QUERY))
            assert (status, header) == (200, "fallback; reason=breaker_open")
        assert fake_reranker.calls == calls, "an open breaker skips the model entirely"

        # After reset_timeout one trial goes through; it fails, so the breaker re-opens.
        clock.now += 59
        assert breaker.state == "open", "not before the reset timeout"
        clock.now += 1
        assert breaker.state == "half-open"
        _, _, header = await _search(sc.url, multi_match(QUERY))
        assert header == "fallback; reason=error"
        assert breaker.state == "open"
        assert fake_reranker.calls == calls + 1

        # The model recovers: the next trial (one small request: rerank.min_window hits)
        # succeeds and closes the breaker; the search after it gets the whole window.
        fake_reranker.mode = "ok"
        status, _, header = await _search(sc.url, multi_match(QUERY))
        assert (status, header) == (200, "fallback; reason=breaker_open"), "re-opened anew"
        clock.now += 60
        _, body, header = await _search(sc.url, multi_match(QUERY))
        assert header == "applied; window=10"
        assert breaker.state == "closed"
        assert body["_rerank"]["status"] == "applied" and body["_rerank"]["reranked"] == 10
        _, body, header = await _search(sc.url, multi_match(QUERY + " again"))
        assert header == "applied"


async def test_client_disconnect_is_not_a_model_failure(
    es: ESTarget, sample_index: str, fake_reranker: FaultModel
) -> None:
    fake_reranker.mode, fake_reranker.delay_s = "slow", 0.25
    config = _config(es.url, fake_reranker)
    config["rerank"]["budget_ms"] = 2000
    async with running_sidecar(config) as sc:
        breaker = sc.app[ADMISSION].breaker
        baseline = own_tasks()
        for n in range(5):
            async with aiohttp.ClientSession() as s:
                body = multi_match(f"{QUERY} {n}")
                post = asyncio.create_task(s.post(f"{sc.url}/{SAMPLE}/_search", json=body))
                # The client goes away while its search is with the (slow) model.
                async with asyncio.timeout(30):
                    await fake_reranker.calls_reached(n + 1)
                post.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await post
        # Every handler and model call of those searches has ended (awaited, not timed).
        assert not await settled(baseline)
        assert breaker.state == "closed"
        assert breaker.fail_counter == 0
        status, _, header = await _search(sc.url, multi_match(QUERY))
        assert (status, header) == (200, "applied")


async def test_local_worker_overload_sheds_load(es: ESTarget, sample_index: str) -> None:
    """Bounded waiting on the real bundled model: one client's concurrent searches, each a
    window of several parts, beyond the parts one client may have waiting for the model
    (MAX_WAITING) fall back at once with reason=overloaded instead of queueing (or keep the
    prefix that found a place); the others are reranked; every response is a 200, and
    shedding load is not a fault of the model."""
    parts = 5
    # Twice the parts that may be with the model and waiting, whatever the model's speed.
    searches = 2 * (MAX_IN_FLIGHT_PAIRS // PART_HITS + MAX_WAITING) // parts
    # The model reads the titles only: the bounds are in pairs, whatever their length, so
    # short pairs reach the same states with a fraction of the model's work.
    titles = [{"pattern": SAMPLE, "fields": ["title"]}]
    config = base_config(es.url, rerank={"window": parts * PART_HITS, "indices": titles})
    async with running_sidecar(config) as sc:
        bodies = [multi_match(f"{QUERY} {i}", size=5) for i in range(searches)]
        results = await asyncio.gather(*(_search(sc.url, b) for b in bodies))
        breaker = sc.app[ADMISSION].breaker
        assert (breaker.state, breaker.fail_counter) == ("closed", 0)
    statuses = {r[0] for r in results}
    headers = [r[2] for r in results]
    assert statuses == {200}
    assert any(h == "applied" or h.startswith("applied; window=") for h in headers)
    assert "fallback; reason=overloaded" in headers
    assert {h for h in headers if not h.startswith("applied")} <= {
        "fallback; reason=overloaded",
        "fallback; reason=budget",
    }
