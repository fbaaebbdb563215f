"""Score a window of hits: cache, language gate, circuit breaker, budget, model.

:meth:`RerankEngine.score` never raises for model trouble. It returns the scores, or
``None`` with an :class:`Outcome` that says why the ES order stands (the ``X-Rerank``
header). Only cancellation (the client went away) propagates, and it is not counted
against the model.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config import SidecarConfig
from sidecar.errors import (
    BreakerOpen,
    InputTooLong,
    Overloaded,
    RerankTimeout,
    RerankUnavailable,
)
from sidecar.rerank.breaker import AsyncBreaker
from sidecar.rerank.budget import Backlog, CostModel
from sidecar.rerank.cache import ResponseCache, ScoreCache, ScoreKey
from sidecar.rerank.demand import Demand
from sidecar.rerank.fair import FairGate, Waiter
from sidecar.rerank.language import LanguageGate
from sidecar.rerank.outcome import APPLIED, CACHED, Outcome
from sidecar.scoring.base import Scorer, ScoreResult

log = logging.getLogger("sidecar.rerank")

#: With the whole window over budget, one small request still goes to the model this often.
PROBE_INTERVAL_S = 5.0
#: No part is taken for hung sooner than this, however quick the model has been.
MIN_HANG_S = 0.1
#: Beyond its share of the model, a search may take what keeps the queue within this
#: share of its budget.
QUEUE_BUDGET_SHARE = 0.5


@dataclass
class Timings:
    model_s: float = 0.0
    queue_s: float = 0.0


@dataclass(frozen=True)
class Doc:
    """One hit as the model sees it (index and id key the score cache)."""

    index: str
    id: str
    text: str


@dataclass
class ScoredWindow:
    scores: list[float] | None
    outcome: Outcome
    timings: Timings


class RerankEngine:
    def __init__(self, config: SidecarConfig, scorer: Scorer) -> None:
        self.config = config
        self.scorer = scorer
        rc = config.rerank
        self.breaker = AsyncBreaker(rc.breaker.fail_max, rc.breaker.reset_timeout_s)
        self.load = rc.load
        self.cost = CostModel()
        # A local model's cost is learned from its worker's passes (a remote scorer never
        # reports any); a remote one's from its answers.
        scorer.add_batch_observer(self._observe_pass)
        #: When the model was last called (time.monotonic: the budget probe's clock).
        self._last_call = time.monotonic()
        self.gate = FairGate(rc.load.max_in_flight_pairs, rc.load.max_waiting_per_client)
        self.demand = Demand()
        self.scores = ScoreCache.from_config(rc.cache)
        self.responses = ResponseCache.from_config(rc.response_cache, rc.extra_identity_headers)
        self.languages = LanguageGate(())
        self._languages_ready = False

    @property
    def _remote(self) -> bool:
        """A remote server's queue is not ours to see: its cost comes from its answers."""
        return self.scorer.info.backend == "remote"

    def _observe_pass(self, pairs: int, padded_tokens: int, seconds: float) -> None:
        self.cost.observe_pass(pairs, seconds)

    def _size_gate(self) -> None:
        """Pairs with a local model at once: what it answers in ``load.in_flight_ms``, at
        least one part. More would queue inside the worker, first come first served, where
        no client can be let ahead; fewer leave it idle between parts."""
        load = self.load
        quick = None if self._remote else self.cost.pairs_in(load.in_flight_ms / 1000)
        size = load.max_in_flight_pairs if quick is None else quick
        self.gate.resize(max(load.chunk_hits, min(load.max_in_flight_pairs, size)))

    def start_language_gate(self) -> None:
        """Called (in a thread) once the model is loaded and has declared its languages."""
        languages = LanguageGate(self.scorer.info.languages)
        languages.load()
        self.languages = languages
        self._languages_ready = True

    @property
    def ready(self) -> bool:
        """Model warm and language gate built: reranking can be applied."""
        return self._languages_ready and self.scorer.ready

    @property
    def model_name(self) -> str:
        return self.scorer.info.name

    def status(self, outcome: Outcome, scored: ScoredWindow | None) -> dict[str, Any]:
        """The ``_rerank`` object of a response: what happened, and with which model."""
        status: dict[str, Any] = {"status": outcome.status}
        if outcome.reason:
            status["reason"] = outcome.reason
        if scored is not None and scored.scores is not None:
            status["model"] = self.model_name
            status["reranked"] = len(scored.scores)
        return status

    async def score(
        self,
        query: str,
        instruction: str | None,
        docs: Sequence[Doc],
        budget_s: float,
        *,
        client: str = "",
        page_from: int = 0,
        deadline: float | None = None,
    ) -> ScoredWindow:
        """Scores for the longest prefix of ``docs`` (in ES order) that the budget allows,
        or why not. ``instruction`` None: the model's. ``client`` is who waits its turn
        (fair admission); ``page_from`` > 0 is a later page of the same search; ``deadline``
        (loop time) replaces ``budget_s`` when several searches share one budget."""
        timings = Timings()
        if not docs:
            return ScoredWindow(None, Outcome("skipped", "no_hits"), timings)
        if not self.ready:
            return ScoredWindow(None, Outcome("skipped", "model_not_ready"), timings)
        if not self.languages.allows(query):
            return ScoredWindow(None, Outcome("skipped", "unsupported_language"), timings)
        if not any(d.text for d in docs):
            return ScoredWindow(None, Outcome("skipped", "no_document_text"), timings)
        instruction = instruction or self.config.model.instruction
        keys: list[ScoreKey] = [
            self.scores.key_for(self.model_name, instruction, query, d.index, d.id, d.text)
            for d in docs
        ]
        cached = self.scores.get_many(keys)
        missing = [v is None for v in cached]
        n, floor = len(docs), min(self.config.rerank.load.min_window, len(docs))
        have = _prefix(missing)
        if not any(missing) or (page_from > 0 and have >= floor):
            # A later page keeps the prefix its first page was served with: its scores are
            # the ones cached, so every hit still appears exactly once across the pages.
            return ScoredWindow(
                [float(v) for v in cached[:have] if v is not None], _cached(have, n), timings
            )
        # Counted before the breaker: searches turned away while it is open are demand
        # too, or the first searches after it closes would find nobody capped.
        asked = sum(missing)
        if self.load.share_throughput:
            self.demand.arrive(client, asked)
        try:
            self.breaker.acquire()
        except BreakerOpen as exc:
            return ScoredWindow(None, Outcome("fallback", exc.reason), timings)
        loop = asyncio.get_running_loop()
        end = deadline if deadline is not None else loop.time() + budget_s
        remaining = end - loop.time()
        self._size_gate()
        backlog = self._backlog(client)
        cap = self._share(client, asked, floor, remaining, backlog)
        k = max(self.cost.fit(missing, remaining, backlog, cap), have)
        if self.breaker.state == "half-open":
            k = min(k, max(have, floor))  # a trial is one small request
        if k < floor and remaining > 0 and time.monotonic() - self._last_call >= PROBE_INTERVAL_S:
            # The estimate only learns from answers: now and then one small request goes
            # ahead anyway, so a cost learned in a stall cannot turn reranking off for good.
            k = floor
        todo = [i for i in range(k) if missing[i]]
        if k < floor or not todo:
            self.breaker.release()
            if have >= floor:
                # What is cached already is all that fits: serve that prefix.
                scores = [float(v) for v in cached[:have] if v is not None]
                return ScoredWindow(scores, _cached(have, n), timings)
            return ScoredWindow(None, Outcome("fallback", "budget"), timings)
        self._last_call = time.monotonic()
        # A remote server takes the window in one call, up to what the gate holds (a bigger
        # one would be admitted alone and hold everyone else back).
        size = self.load.max_in_flight_pairs if self._remote else self.load.chunk_hits
        parts = [todo[j : j + size] for j in range(0, len(todo), size)]
        # Every part takes its place in the queue now, before anything awaits: the next
        # search (a sibling in the same _msearch, say) sees them in its backlog.
        places: list[Part] = []
        for part in parts:
            try:
                places.append(Part(part, self.gate.enqueue(client, len(part))))
            except Overloaded:
                break  # this client has enough waiting: the prefix queued so far is it
        if not places:
            self.breaker.release()
            return ScoredWindow(None, Outcome("fallback", "overloaded"), timings)
        parts = [p.indices for p in places]
        texts = [d.text for d in docs]
        tasks = []
        for place in places:
            task = asyncio.create_task(self._score_part(place, query, instruction, texts, end))
            # Runs however the task ends, even cancelled before it started.
            task.add_done_callback(functools.partial(self._leave, place.waiter))
            tasks.append(task)
        t0 = time.perf_counter()
        try:
            done, pending = await asyncio.wait(tasks, timeout=max(0.0, end - loop.time()))
        except asyncio.CancelledError:
            await _cancel(tasks)
            self.breaker.release()
            raise
        try:
            await _cancel(pending)
        except asyncio.CancelledError:
            self.breaker.release()  # a half-open trial must not stay taken
            raise
        return self._settle(cached, keys, places, tasks, done, t0, backlog, timings)

    async def score_all(
        self,
        client: str,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        timeout_s: float,
    ) -> ScoreResult:
        """Every document scored, for the rerank API: no cache, no budget cut, no breaker.

        The documents go in parts, each admitted on its own: a 1,000-document request
        takes its turns beside everyone else's parts instead of holding the model for all
        of its pairs. Two parts are out at once (one with the model, the next waiting), each
        half of what the gate holds and at least ``load.chunk_hits`` (a remote server's at
        most what the gate holds), so the model never idles between them and one request
        never has more than two places in its client's queue. Past the first error the
        rest are dropped.
        """
        self._size_gate()
        # Not counted as demand: it is never capped, and the gate serves the lighter
        # users (searches) ahead of it anyway.
        if self._remote:
            size = self.load.max_in_flight_pairs
        else:
            size = max(self.load.chunk_hits, self.gate.max_pairs // 2)
        parts = [documents[j : j + size] for j in range(0, len(documents), size)]
        out = asyncio.Semaphore(2)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s

        async def one(part: Sequence[str]) -> ScoreResult:
            async with out, self.gate.admit(client, len(part)):
                left = max(0.0, end - loop.time())
                return await self.scorer.score(query, part, instruction, timeout=left)

        tasks = [asyncio.create_task(one(part)) for part in parts]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            # The first error is the answer; the other parts are not wanted any more.
            await _cancel(tasks)
            for task in tasks:
                if not task.cancelled():
                    task.exception()
            raise
        return ScoreResult(
            [score for r in results for score in r.scores],
            tokens=sum(r.tokens for r in results),
            queue_s=max(r.queue_s for r in results),
            model_s=sum(r.model_s for r in results),
        )

    def _share(
        self, client: str, asked: int, floor: int, remaining_s: float, backlog: Backlog
    ) -> int | None:
        """The most pairs this search may ask for (None: what the budget allows). Its
        client's share of the model while searches ask for more than it answers
        (:mod:`sidecar.rerank.demand`), or more where the model's queue, this search
        included, still stays within :data:`QUEUE_BUDGET_SHARE` of the budget: a search
        behind it then still has the rest of its budget. With a long budget that is the
        whole window, so a client that sends its next search as soon as an answer comes
        is not cut down by its own pace. A share below the floor still tries the floor:
        the budget decides whether it fits."""
        steady = self.cost.steady
        if not self.load.share_throughput or steady is None:
            return None
        share = self.demand.cap(client, steady)
        if share is None:
            return None
        room = math.floor(QUEUE_BUDGET_SHARE * remaining_s / (steady * self.cost.safety))
        return max(share, room - backlog.before(0), min(floor, asked))

    def _leave(self, waiter: Waiter, _: object) -> None:
        self.gate.leave(waiter)

    def _expected_s(self, place: Part) -> float | None:
        """How long an admitted part should take, from what the model answered lately."""
        ahead = Backlog(with_model=place.waiter.ahead)
        return self.cost.predict_answer(len(place.indices), ahead)

    def _hung(self, place: Part, now: float) -> bool:
        """Admitted, and with the model ``breaker.hang_factor`` times longer than its pairs
        and those ahead of it should take, plus the longest recent pass (a part can wait
        for a pass already under way, and a small part costs more than its pairs' share):
        a hang. Waiting to be admitted is load."""
        expected = self._expected_s(place)
        if place.admitted_at is None or expected is None:
            return False
        allowed = (expected + self.cost.slowest_pass_s) * self.config.rerank.breaker.hang_factor
        return now - place.admitted_at > max(allowed, MIN_HANG_S)

    def _backlog(self, client: str) -> Backlog:
        """What a new request of ``client`` waits behind: the pairs with the model (the
        worker's queue included), the client's own waiting pairs, and those of the other
        waiting clients that are lighter users of the model than it is."""
        waiting = self.gate.waiting(client)
        with_model = max(self.gate.in_flight, self.scorer.queued_pairs)
        return Backlog(with_model, waiting.own_pairs, waiting.own_usage, waiting.others)

    async def _score_part(
        self,
        place: Part,
        query: str,
        instruction: str,
        texts: Sequence[str],
        end: float,
    ) -> tuple[ScoreResult, float, int]:
        """One part of the window, once admitted; its answer, how long it took once
        admitted, and how many pairs were with the model ahead of it then."""
        loop = asyncio.get_running_loop()
        await place.waiter.admitted
        place.admitted_at = time.perf_counter()
        result = await self.scorer.score(
            query,
            [texts[i] for i in place.indices],
            instruction,
            timeout=max(0.0, end - loop.time()),
        )
        return result, time.perf_counter() - place.admitted_at, place.waiter.ahead

    def _settle(
        self,
        cached: list[float | None],
        keys: list[ScoreKey],
        places: list[Part],
        tasks: list[asyncio.Task[tuple[ScoreResult, float, int]]],
        done: set[asyncio.Task[tuple[ScoreResult, float, int]]],
        t0: float,
        backlog: Backlog,
        timings: Timings,
    ) -> ScoredWindow:
        """Turn the parts that came back into scores for a prefix of the window, and tell
        the breaker what the model did (a fault), or nothing (load)."""
        scores = list(cached)
        answered = overloaded = late = False
        hung: Part | None = None
        fault: BaseException | None = None
        now = time.perf_counter()
        # Every part's exception is read, so none is left "never retrieved".
        for place, task in zip(places, tasks, strict=True):
            part = place.indices
            if task not in done or task.cancelled():
                late = True
                if hung is None and self._hung(place, now):
                    hung = place
                continue
            exc = task.exception()
            if exc is None:
                result, elapsed, part_ahead = task.result()
                if self._remote:
                    self.cost.observe(elapsed, len(part), part_ahead)
                self.scores.put_many([keys[i] for i in part], result.scores)
                for i, score in zip(part, result.scores, strict=True):
                    scores[i] = score
                timings.model_s = max(timings.model_s, result.model_s)
                timings.queue_s = max(timings.queue_s, result.queue_s)
                answered = True
            elif isinstance(exc, Overloaded):
                # Shedding load is the queue doing its job, not the model failing.
                overloaded = True
            elif isinstance(exc, RerankTimeout):
                # Out of time inside the scorer (a remote server that stopped answering
                # says so with a timeout too): a hang if it was with the model too long.
                late = True
                if hung is None and self._hung(place, now):
                    hung = place
            elif fault is None:
                fault = exc
        if isinstance(fault, InputTooLong):
            # The request cannot be scored, the model is fine: no verdict for the breaker.
            self.breaker.release()
            return ScoredWindow(None, Outcome("skipped", fault.reason), timings)
        if isinstance(fault, RerankUnavailable):
            self.breaker.failure()
            log.warning("rerank failed (%s); serving ES order", fault.reason)
            return ScoredWindow(None, Outcome("fallback", fault.reason), timings)
        if fault is not None:
            # A backend bug must never break search: log it, count it, fall back.
            self.breaker.failure()
            log.error("unexpected error from the reranker; serving ES order", exc_info=fault)
            return ScoredWindow(None, Outcome("fallback", "error"), timings)
        if answered:
            self.breaker.success()
        elif late:
            if self._remote:
                pairs = sum(len(p.indices) for p in places)
                self.cost.observe_timeout(now - t0, pairs, backlog.before(pairs) - pairs)
            if hung is not None and hung.admitted_at is not None:
                log.warning(
                    "%d pairs with the model for %.2f s without an answer, where %.2f s "
                    "was predicted; counted as a hang",
                    len(hung.indices),
                    now - hung.admitted_at,
                    self._expected_s(hung) or 0.0,
                )
                self.breaker.failure()
            else:
                self.breaker.release()
        else:
            self.breaker.release()
        n = len(scores)
        have = _prefix([v is None for v in scores])
        if have < min(self.config.rerank.load.min_window, n):
            reason = "timeout" if late else "overloaded" if overloaded else "budget"
            return ScoredWindow(None, Outcome("fallback", reason), timings)
        outcome = APPLIED if have == n else Outcome("applied", window=have)
        return ScoredWindow([float(v) for v in scores[:have] if v is not None], outcome, timings)


@dataclass(eq=False)
class Part:
    """Hits of one window scored in one call: its place at the gate (which also says how
    many pairs were with the model ahead of it), and when it was admitted."""

    indices: list[int]
    waiter: Waiter
    admitted_at: float | None = None


def _prefix(missing: Sequence[bool]) -> int:
    """How many documents from the top have a score."""
    for i, miss in enumerate(missing):
        if miss:
            return i
    return len(missing)


def _cached(have: int, n: int) -> Outcome:
    return CACHED if have == n else Outcome("cached", window=have)


async def _cancel(tasks: Iterable[asyncio.Task[Any]]) -> None:
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
