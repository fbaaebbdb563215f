"""Model faults under load: 100 concurrent clients against a real sidecar process while the
rerank server hangs, is slow past the budget, fails, answers NaN or one score short, or is
overloaded; and the real bundled model overloaded.

Whatever the model does: not one response with a non-2xx status, every response valid ES
JSON whose ``X-Rerank`` header agrees with its ``_rerank`` object, the ES order (exactly) on
every fallback, and the breaker opens under failures and closes again once the model is back.

Single faults, one request at a time, are covered in tests/rerank/test_fail_open.py. The
fault schedule moves on when the searches have met each fault, not by the clock. The
overloaded bundled model runs ``RELIABILITY_LOAD_S`` (default 8, at most 6 here) seconds;
``python -m devtools.soak`` runs the mixed long variant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from devtools.clients import Result, check_search_response, rerank_header, run_clients
from devtools.fakes import FaultModel
from es_integration.corpus import read_jsonl, sample_queries_path
from sidecar.admission.controller import PART_HITS
from sidecar.admission.queue import MAX_WAITING
from tests.conftest import ESTarget
from tests.reliability.conftest import LOAD_S
from tests.support.reliability import breaker_not_open, metrics, overrides, sidecar_process
from tests.support.search import BUNDLED_MODEL, PINNED_PASS_OVERHEAD_TOKENS, SAMPLE, multi_match

CLIENTS = 100
#: The fault schedule; every fault is followed by a healthy phase so the breaker can close.
PHASES = ("ok", "hang", "ok", "slow", "error", "ok", "nan", "wrong_count", "ok", "overloaded", "ok")
#: What searches show, in this order, when they meet each mode of the model (a hang opens
#: the breaker). A model that fails at once after a slow phase may be met by the admission's
#: background probe rather than by a search (the cost it learned keeps searches off it):
#: its failures then open the breaker, which is what the searches show.
FAILED = frozenset({"fallback; reason=error", "fallback; reason=breaker_open"})
MEETS: dict[str, tuple[frozenset[str], ...]] = {
    "ok": (frozenset({"applied"}),),
    "hang": (frozenset({"fallback; reason=timeout"}), frozenset({"fallback; reason=breaker_open"})),
    "slow": (frozenset({"fallback; reason=timeout"}),),
    "error": (FAILED,),
    "nan": (FAILED,),
    "wrong_count": (FAILED,),
    "overloaded": (frozenset({"fallback; reason=overloaded"}),),
}
#: A phase that has not shown its outcome by then is reported as missed.
PHASE_MAX_S = 30.0


def _queries() -> list[str]:
    return [q["query"] for q in read_jsonl(sample_queries_path()) if q["query"].isascii()]


async def _es_order(es_url: str, queries: list[str]) -> dict[str, list[str]]:
    out = {}
    async with aiohttp.ClientSession() as s:
        for q in queries:
            async with s.post(f"{es_url}/{SAMPLE}/_search", json=multi_match(q, size=20)) as r:
                out[q] = [h["_id"] for h in (await r.json())["hits"]["hits"]]
    return out


class BreakerWatch:
    """Samples the breaker state from /_sidecar/metrics while the load runs."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.seen: Counter[str] = Counter()
        self.queue_peak = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as s:
            while not self._stop.is_set():
                with contextlib.suppress(aiohttp.ClientError):
                    m = await metrics(s, self.base)
                    for state in ("closed", "open", "half-open"):
                        if m.get(f'rerank_sidecar_breaker_state{{state="{state}"}}') == 1.0:
                            self.seen[state] += 1
                    self.queue_peak = max(self.queue_peak, m["rerank_sidecar_queue_pairs"])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.1)

    def __enter__(self) -> BreakerWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


class Outcomes:
    """The X-Rerank headers the clients have seen, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    async def add(self, header: str) -> None:
        async with self._changed:
            self.counts[header] += 1
            self._changed.notify_all()

    async def next(self, headers: frozenset[str], timeout_s: float) -> bool:
        """Whether a search shows one of ``headers`` within ``timeout_s`` from now."""

        def seen() -> int:
            return sum(self.counts[h] for h in headers)

        async with self._changed:
            before = seen()
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: seen() > before), timeout_s)
            except TimeoutError:
                return False
            return True


async def _cycle(model: FaultModel, outcomes: Outcomes, missed: list[str]) -> None:
    """Each phase lasts until a search has met it. The clock cannot say when: after a
    fault the breaker is open and the learned cost is high, and only a half-open trial or
    a budget probe reaches the model, every few seconds."""
    loop = asyncio.get_running_loop()
    for mode in PHASES:
        model.mode, model.delay_s = mode, 1.0
        calls = model.calls
        for header in MEETS[mode]:
            # A header from a search that reached the model in the previous mode does not
            # count: wait until one comes after the model has been called in this mode.
            deadline = loop.time() + PHASE_MAX_S
            met = False
            while not met and loop.time() < deadline:
                called = model.calls > calls
                met = await outcomes.next(header, deadline - loop.time()) and called
            if not met:
                missed.append(f"{mode}: {' or '.join(sorted(header))}")
    model.mode = "ok"


async def test_model_faults_under_100_concurrent_clients(
    es: ESTarget, sample_index: str, fault_model: FaultModel, tmp_path: Path
) -> None:
    queries = _queries()
    direct = await _es_order(es.url, queries)
    config = overrides(
        tuning__remote__read_timeout_s=5,
        rerank__budget_ms=300,
        rerank__window=20,
        # Every search must reach the model, so that every search meets the fault.
        rerank__cache__enabled=False,
        rerank__breaker__fail_max=3,
        rerank__breaker__reset_timeout_s=0.5,
    )
    outcomes = Outcomes()
    missed: list[str] = []
    wrong: list[str] = []

    def pick(rng: random.Random) -> Any:
        query = rng.choice(queries)

        async def go(session: aiohttp.ClientSession, base: str) -> Result:
            t0 = time.perf_counter()
            async with session.post(f"{base}/{SAMPLE}/_search", json=multi_match(query)) as r:
                body = await r.read()
                problem = check_search_response(r.status, r.headers, body, msearch=False)
                header = r.headers.get("X-Rerank", "")
            if problem is None:
                ids = [h["_id"] for h in json.loads(body)["hits"]["hits"]]
                status, _ = rerank_header(header)
                if status == "applied" and not set(ids) <= set(direct[query]):
                    # Reranked within the window of 20: every hit is from ES's top 20.
                    wrong.append(f"{header}: {ids} not from ES's window {direct[query]}")
                if status != "applied" and ids != direct[query][:10]:
                    wrong.append(f"{header}: {ids} != ES order {direct[query][:10]}")
                await outcomes.add(header)
            return Result("search", r.status, time.perf_counter() - t0, header, problem)

        return go

    log = tmp_path / "sidecar.log"
    async with sidecar_process(es.url, log, model=fault_model.url, config=config) as sc:
        with BreakerWatch(sc.url) as watch:
            cycled = asyncio.Event()
            cycling = asyncio.create_task(_cycle(fault_model, outcomes, missed))
            cycling.add_done_callback(lambda _: cycled.set())
            try:
                tally = await run_clients(sc.url, pick, stop=cycled, concurrency=CLIENTS)
            finally:
                cycling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cycling
            await watch.stop()
        # The model is healthy again: once the reset timeout has passed, a trial closes
        # the breaker.
        async with aiohttp.ClientSession() as s:
            await breaker_not_open(s, sc.url)
            headers = []
            for query in queries[:3]:
                async with s.post(f"{sc.url}/{SAMPLE}/_search", json=multi_match(query)) as r:
                    assert r.status == 200
                    headers.append(r.headers["X-Rerank"])
            async with s.get(f"{sc.url}/_sidecar/ready") as r:
                ready = await r.json()
        assert sc.proc.poll() is None, "the sidecar must stay up"

    assert len(tally.results) > CLIENTS, "the load did not run"
    assert not tally.unexplained(), tally.unexplained().most_common(5)
    assert {r.status for r in tally.results} == {200}
    assert not wrong, wrong[:3]
    assert not missed, (missed, outcomes.counts)
    assert watch.seen["open"] > 0, watch.seen
    assert headers[-1] == "applied", headers
    assert ready["breaker"] == "closed"
    assert "Traceback" not in log.read_text()


async def test_bundled_model_overload_sheds_load_and_drains(
    es: ESTarget, sample_index: str, tmp_path: Path
) -> None:
    """The real model on this CPU, 100 clients (one address), a small worker queue: excess
    searches fall back at once (overloaded) instead of queueing; what waits for the model
    (worker queue, plus the client's parts waiting for admission: MAX_WAITING parts of
    PART_HITS) never exceeds its bound and drains."""
    worker_bound = 60
    bound = worker_bound + MAX_WAITING * PART_HITS
    config = overrides(
        tuning__worker__max_queue_pairs=worker_bound,
        tuning__worker__max_batch_pairs=20,
        # Not a test of timing passes (tests/models/test_worker.py is).
        tuning__worker__pass_overhead_tokens=PINNED_PASS_OVERHEAD_TOKENS,
        rerank__window=20,
        rerank__budget_ms=60_000,
        rerank__cache__enabled=False,
        # The model reads the titles only: the bounds are in pairs, whatever their length,
        # so short pairs reach the same states, and drain, with a fraction of the work.
        rerank__indices=[{"pattern": SAMPLE, "fields": ["title"]}],
    )
    words = [
        "library",
        "card",
        "renew",
        "books",
        "online",
        "account",
        "catalogue",
        "history",
        "medicine",
    ]

    def pick(rng: random.Random) -> Any:
        query = " ".join(rng.sample(words, 3))

        async def go(session: aiohttp.ClientSession, base: str) -> Result:
            t0 = time.perf_counter()
            async with session.post(f"{base}/{SAMPLE}/_search", json=multi_match(query)) as r:
                body = await r.read()
                problem = check_search_response(r.status, r.headers, body, msearch=False)
                header = r.headers.get("X-Rerank", "")
            return Result("search", r.status, time.perf_counter() - t0, header, problem)

        return go

    log = tmp_path / "sidecar.log"
    async with sidecar_process(es.url, log, model=BUNDLED_MODEL, config=config) as sc:
        with BreakerWatch(sc.url) as watch:
            tally = await run_clients(
                sc.url, pick, duration_s=min(LOAD_S, 6.0), concurrency=CLIENTS
            )
            await watch.stop()
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                if (await metrics(s, sc.url))["rerank_sidecar_queue_pairs"] == 0:
                    break
                await asyncio.sleep(0.1)
            assert (await metrics(s, sc.url))["rerank_sidecar_queue_pairs"] == 0
            async with s.get(f"{sc.url}/_sidecar/ready") as r:
                assert r.status == 200
        assert sc.proc.poll() is None

    assert not tally.unexplained(), tally.unexplained().most_common(5)
    assert {r.status for r in tally.results} == {200}
    assert tally.outcomes()["fallback; reason=overloaded"] > 0, tally.outcomes()
    assert watch.queue_peak <= bound
    assert watch.seen["open"] == 0, "shedding load is not a model failure"
