"""The admission controller: whether a search gets the model, and how much of it.

A search that needs the model asks :meth:`AdmissionController.admit` with what its window
is missing (the hits without a cached score, in ES order) and its :class:`Deadline`. The
answer is a :class:`Refusal` (ES's order stands, for a :class:`~sidecar.reasons.Reason`) or
a :class:`Grant`: the top K of the window, in parts, each with its place in the model's fair
queue already taken (so the next search, a sibling in the same ``_msearch`` say, sees them
ahead of it). K is the longest prefix that

* the model is predicted to answer before the deadline, behind what the queue will admit
  first (:meth:`FairQueue.ahead_of`, at the meter's cost);
* and, while searches ask for more than the model answers, stays within the client's share
  of the model's throughput (:mod:`~sidecar.admission.share`), or within what keeps the
  model's queue inside :data:`QUEUE_BUDGET_SHARE` of the budget.

The controller owns the circuit breaker. A grant is held as an async context manager: it
is the breaker's acquisition, and leaving it without a verdict (the client went away, a
bug) releases the breaker, so a half-open trial can never stay taken. Running it
(:meth:`Grant.run`) scores the parts until the deadline and gives the breaker its verdict:
a fault (an error, unusable scores, a hang), a success, or nothing (load: running out of
time behind the queue, shedding, waiting to be admitted).

When less than ``rerank.min_window`` fits, the search is refused at once (``budget``): it is
answered in ES's time. A cost learned in a stall would then turn reranking off for good,
since the meter only learns from the model's work; so now and then (:data:`PROBE_INTERVAL_S`
after the model last worked, at most :data:`PROBE_DUTY` of the model's time) the refused
search's first ``min_window`` hits go to the model in the background, under the breaker
like any grant, while the search itself is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.admission.breaker import AsyncBreaker
from sidecar.admission.ledger import ClientLedger
from sidecar.admission.meter import ModelMeter
from sidecar.admission.queue import FairQueue, Waiter
from sidecar.admission.share import ThroughputShare
from sidecar.deadline import Deadline, now
from sidecar.errors import (
    BreakerOpen,
    InputTooLong,
    Overloaded,
    RerankTimeout,
    RerankUnavailable,
)
from sidecar.reasons import Reason
from sidecar.scoring.base import ScoreResult

log = logging.getLogger("sidecar.admission")

#: A local model scores a window in parts of this many hits, in ES order, so that a
#: deadline mid-way still leaves a reranked prefix.
PART_HITS = 10
#: Pairs with the model at once, all clients together (a remote server's part at most).
MAX_IN_FLIGHT_PAIRS = 256
#: With a local model, also at most what it answers in this long (at least one part): a
#: search that arrives behind a big request waits about this long for its first turn.
IN_FLIGHT_S = 0.25
#: Beyond its share of the model, a search may take what keeps the queue within this share
#: of its budget: a search behind it still has the rest of its own.
QUEUE_BUDGET_SHARE = 0.5
#: A refused search probes the model when it has not worked for this long...
PROBE_INTERVAL_S = 5.0
#: ... and probes take at most this share of the model's time.
PROBE_DUTY = 0.1

#: Scores for the hits at ``indices`` of the window (in that order), before ``deadline``.
ScorePart = Callable[[Sequence[int], Deadline], Awaitable[ScoreResult]]


@dataclass(frozen=True)
class Asker:
    """Who asks the model: the client that waits its turn (an address) and its request
    (an ``_msearch``'s sub-searches are one request)."""

    client: str
    request: str


@dataclass(frozen=True)
class Window:
    """What one search asks of the model: for each hit of its window, in ES order, whether
    it lacks a cached score; how long a prefix is cached; the fewest hits worth reranking."""

    missing: Sequence[bool]
    have: int
    floor: int


@dataclass(frozen=True)
class Refusal:
    reason: Reason


@dataclass
class Timings:
    model_s: float = 0.0
    queue_s: float = 0.0


@dataclass
class Answers:
    """What came back of a grant: scores by window index, and why the rest did not.
    ``fault`` set: nothing usable (``query_too_long``: the request's problem; anything else:
    the model's). ``short``: why the window may end before its last hit."""

    scores: dict[int, float] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    fault: Reason | None = None
    short: Reason = Reason.BUDGET


@dataclass(eq=False)
class Part:
    """Hits of one window scored in one call, and their place in the queue."""

    indices: list[int]
    waiter: Waiter
    admitted_at: float | None = None


class AdmissionController:
    def __init__(
        self,
        *,
        breaker: AsyncBreaker,
        meter: ModelMeter,
        ledger: ClientLedger,
        remote: Callable[[], bool] = lambda: False,
        held_elsewhere: Callable[[], int] = lambda: 0,
        share_throughput: bool = True,
    ) -> None:
        self.breaker = breaker
        self.meter = meter
        self.ledger = ledger
        self.clock = ledger.clock
        self.queue = FairQueue(
            ledger,
            MAX_IN_FLIGHT_PAIRS,
            held_elsewhere=held_elsewhere,
            answered_since=meter.answered_since,
        )
        self.share = ThroughputShare(ledger) if share_throughput else None
        self._remote = remote
        self._probes: set[asyncio.Task[None]] = set()
        self._next_probe = -math.inf

    @property
    def remote(self) -> bool:
        """A remote server's queue is not ours to see, and it takes a window in one call."""
        return self._remote()

    @property
    def _part(self) -> int:
        """Pairs in one part of a window: a remote server takes it in one call."""
        return MAX_IN_FLIGHT_PAIRS if self.remote else PART_HITS

    # --- searches -------------------------------------------------------------------------

    def admit(
        self, asker: Asker, window: Window, deadline: Deadline, score: ScorePart
    ) -> Grant | Refusal:
        """A grant of the top K of ``window`` (its places taken), or why not."""
        client = asker.client
        if self.share is not None:
            # Counted before the breaker: searches turned away while it is open are demand
            # too, or the first searches after it closes would find nobody capped.
            self.share.arrive(client, sum(window.missing))
        try:
            self.breaker.acquire()
        except BreakerOpen:
            return Refusal(Reason.BREAKER_OPEN)
        self._size_queue()
        k = max(self._fit(asker, window, deadline), window.have)
        if self.breaker.state == "half-open":
            k = min(k, max(window.have, window.floor))  # a trial is one small request
        todo = [i for i in range(k) if window.missing[i]]
        if k < window.floor or not todo:
            self.breaker.release()
            if k < window.floor:
                self._maybe_probe(asker, window, deadline, score)
            return Refusal(Reason.BUDGET)
        return self._grant(asker, todo, deadline, score) or self._overloaded()

    def _overloaded(self) -> Refusal:
        self.breaker.release()
        return Refusal(Reason.OVERLOADED)

    def _grant(
        self, asker: Asker, todo: list[int], deadline: Deadline, score: ScorePart
    ) -> Grant | None:
        """Places for ``todo`` in parts, taken now; None when the client (or the request)
        already has all the parts waiting it may have."""
        size = self._part
        # All of what is with the model: a remote call that gets no answer bounds the cost
        # by it (Grant._verdict), and a stalled server has answered none of it.
        ahead = math.ceil(
            self.queue.ahead_of(asker.client, asker.request, len(todo), size, progress=False)
        )
        places: list[Part] = []
        for j in range(0, len(todo), size):
            part = todo[j : j + size]
            try:
                waiter = self.queue.enqueue(asker.client, asker.request, len(part))
                places.append(Part(part, waiter))
            except Overloaded:
                break  # the prefix queued so far is what this search gets
        return Grant(self, places, deadline, score, ahead) if places else None

    def _size_queue(self) -> None:
        """Pairs with a local model at once: what it answers in :data:`IN_FLIGHT_S`, at
        least one part. More would wait inside its worker, first come first served, where
        no client can be let ahead; fewer leave it idle between parts."""
        quick = None if self.remote else self.meter.quick_pairs(IN_FLIGHT_S)
        size = MAX_IN_FLIGHT_PAIRS if quick is None else quick
        self.queue.resize(max(PART_HITS, min(MAX_IN_FLIGHT_PAIRS, size)))

    def _fit(self, asker: Asker, window: Window, deadline: Deadline) -> int:
        """The longest prefix of the window whose missing pairs are predicted to be
        answered before the deadline, within the client's share."""
        remaining = deadline.remaining()
        affordable = self.meter.pairs_within(remaining)
        cap = self._cap(asker, window, remaining)
        # How many of the missing pairs fit (the prediction grows with them: bisect).
        low, high = 0, sum(window.missing) if cap is None else min(cap, sum(window.missing))
        while low < high:
            mid = (low + high + 1) // 2
            if self.queue.ahead_of(asker.client, asker.request, mid, self._part) <= affordable:
                low = mid
            else:
                high = mid - 1
        asked = 0
        for i, miss in enumerate(window.missing):
            asked += miss
            if miss and asked > low:
                return i
        return len(window.missing)

    def _cap(self, asker: Asker, window: Window, remaining_s: float) -> int | None:
        """The most pairs this search may ask for (None: what the budget allows): its
        client's share of the model, or more where the queue, this search included, stays
        within :data:`QUEUE_BUDGET_SHARE` of the budget. With a long budget that is the
        whole window, so a client that sends its next search as soon as an answer comes is
        not cut down by its own pace. A share below the floor still tries the floor."""
        steady = self.meter.steady
        if self.share is None or steady is None:
            return None
        share = self.share.cap(asker.client, steady)
        if share is None:
            return None
        room = math.floor(self.meter.pairs_within(QUEUE_BUDGET_SHARE * remaining_s))
        asked = sum(window.missing)
        ahead = math.ceil(self.queue.ahead_of(asker.client, asker.request, 0, self._part))
        return max(share, room - ahead, min(window.floor, asked))

    # --- probes ---------------------------------------------------------------------------

    def _maybe_probe(
        self, asker: Asker, window: Window, deadline: Deadline, score: ScorePart
    ) -> None:
        """Now and then, score a refused search's first hits in the background: the meter
        learns from what the model does, and only from that."""
        at = self.clock()
        idle = at - self.meter.last_seen >= PROBE_INTERVAL_S and not self.queue.with_model
        if self._probes or not idle or at < self._next_probe or deadline.expired:
            return
        todo = [i for i in range(len(window.missing)) if window.missing[i]][: window.floor]
        if not todo:
            return
        try:
            self.breaker.acquire()
        except BreakerOpen:
            return
        grant = self._grant(asker, todo, deadline, score)
        if grant is None:
            self.breaker.release()
            return
        took = self.meter.seconds_for(len(todo)) or 0.0
        self._next_probe = at + max(PROBE_INTERVAL_S, took / PROBE_DUTY)
        task = asyncio.create_task(_probe(grant))
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def drain(self) -> None:
        """Wait for the probes under way."""
        await asyncio.gather(*self._probes, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._probes):
            task.cancel()
        await self.drain()

    # --- the rerank API -------------------------------------------------------------------

    async def score_all(
        self, asker: Asker, count: int, deadline: Deadline, score: ScorePart
    ) -> ScoreResult:
        """Every one of ``count`` documents scored, for the rerank API: no budget cut, no
        breaker. The documents go in parts, each admitted on its own: a 1,000-document
        request takes its turns beside everyone else's parts instead of holding the model
        for all of its pairs. Two parts are out at once (one with the model, the next
        waiting), each half of what the queue holds and at least :data:`PART_HITS` (a
        remote server's at most what the queue holds). Past the first error the rest are
        dropped. Not counted as demand: it is never capped."""
        self._size_queue()
        half = max(PART_HITS, self.queue.max_pairs // 2)
        size = MAX_IN_FLIGHT_PAIRS if self.remote else half
        out = asyncio.Semaphore(2)

        async def one(part: range) -> ScoreResult:
            async with out, self.queue.admit(asker.client, asker.request, len(part)):
                return await score(part, deadline)

        starts = range(0, count, size)
        tasks = [asyncio.create_task(one(range(j, min(j + size, count)))) for j in starts]
        try:
            results = await asyncio.gather(*tasks)
        finally:
            await _cancel(tasks)
        return ScoreResult(
            [s for r in results for s in r.scores],
            tokens=sum(r.tokens for r in results),
            queue_s=max(r.queue_s for r in results),
            model_s=sum(r.model_s for r in results),
        )


class Grant:
    """The top K of a window, in parts whose places in the queue are taken. Hold it with
    ``async with``; :meth:`run` it once."""

    def __init__(
        self,
        controller: AdmissionController,
        parts: list[Part],
        deadline: Deadline,
        score: ScorePart,
        ahead: int,
    ) -> None:
        self._controller = controller
        self.parts = parts
        self._deadline = deadline
        self._score = score
        #: Pairs answered before this grant's last, them included, when it was planned.
        self._ahead = ahead
        self._tasks: list[asyncio.Task[ScoreResult]] = []
        self._settled = False

    @property
    def pairs(self) -> int:
        return sum(len(p.indices) for p in self.parts)

    async def __aenter__(self) -> Grant:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await _cancel(self._tasks)  # each task gives its place back as it ends
        finally:
            if not self._tasks:  # never run: the places taken at admission go back
                for part in self.parts:
                    self._controller.queue.leave(part.waiter)
            if not self._settled:
                self._settled = True
                self._controller.breaker.release()

    async def run(self) -> Answers:
        """Score the parts until the deadline, and tell the breaker what the model did."""
        queue = self._controller.queue
        for part in self.parts:
            task = asyncio.create_task(self._one(part))
            # Runs however the task ends, even cancelled before it started.
            task.add_done_callback(functools.partial(_leave, queue, part.waiter))
            self._tasks.append(task)
        started = now()
        done, pending = await asyncio.wait(self._tasks, timeout=self._deadline.remaining())
        await _cancel(pending)
        return self._settle(done, started)

    async def _one(self, part: Part) -> ScoreResult:
        await part.waiter.admitted
        part.admitted_at = now()
        return await self._score(part.indices, self._deadline)

    def _settle(self, done: set[asyncio.Task[ScoreResult]], started: float) -> Answers:
        """The parts that came back as scores, and the breaker's verdict."""
        answers = Answers()
        late = overloaded = False
        hung: Part | None = None
        fault: BaseException | None = None
        settled_at = now()
        for part, task in zip(self.parts, self._tasks, strict=True):
            exc: BaseException | None = RerankTimeout("late")
            if task in done and not task.cancelled():
                exc = task.exception()  # read: never "never retrieved"
            if exc is None:
                self._answered(part, task.result(), answers)
            elif isinstance(exc, Overloaded):
                overloaded = True  # shedding load is the queue doing its job
            elif isinstance(exc, RerankTimeout):
                # Out of time (a remote server that stopped answering says so with a
                # timeout too): a hang if it was with the model too long.
                late = True
                hung = hung or (part if self._hung(part, settled_at) else None)
            elif fault is None:
                fault = exc
        self._verdict(answers, fault, late, hung, settled_at - started)
        answers.short = (
            Reason.TIMEOUT if late else Reason.OVERLOADED if overloaded else Reason.BUDGET
        )
        return answers

    def _answered(self, part: Part, result: ScoreResult, answers: Answers) -> None:
        for i, score in zip(part.indices, result.scores, strict=True):
            answers.scores[i] = score
        answers.timings.model_s = max(answers.timings.model_s, result.model_s)
        answers.timings.queue_s = max(answers.timings.queue_s, result.queue_s)

    def _hung(self, part: Part, at: float) -> bool:
        """Admitted, and with the model far longer than it and those ahead of it should
        take: a hang. Waiting to be admitted is load."""
        if part.admitted_at is None:
            return False
        pairs = part.waiter.ahead + len(part.indices)
        return self._controller.meter.hang(pairs, at - part.admitted_at)

    def _verdict(
        self,
        answers: Answers,
        fault: BaseException | None,
        late: bool,
        hung: Part | None,
        elapsed_s: float,
    ) -> None:
        controller = self._controller
        breaker = controller.breaker
        self._settled = True
        if isinstance(fault, InputTooLong):
            # The request cannot be scored, the model is fine: no verdict for the breaker.
            answers.fault = fault.reason
            breaker.release()
        elif fault is not None:
            answers.fault = fault.reason if isinstance(fault, RerankUnavailable) else Reason.ERROR
            if isinstance(fault, RerankUnavailable):
                log.warning("rerank failed (%s); serving ES order", fault.reason)
            else:
                # A backend bug must never break search: log it, count it, fall back.
                log.error("unexpected error from the reranker; serving ES order", exc_info=fault)
            breaker.failure()
        elif answers.scores:
            breaker.success()
        elif late:
            if controller.remote:
                controller.meter.unanswered(self._ahead, elapsed_s)
            if hung is not None:
                log.warning(
                    "%d pairs with the model for %.2f s without an answer, where far less "
                    "was predicted; counted as a hang",
                    len(hung.indices),
                    elapsed_s,
                )
                breaker.failure()
            else:
                breaker.release()
        else:
            breaker.release()


def _leave(queue: FairQueue, waiter: Waiter, _: object) -> None:
    queue.leave(waiter)


async def _probe(grant: Grant) -> None:
    """A grant run in the background for what the meter learns from it."""
    with contextlib.suppress(Exception):
        async with grant:
            await grant.run()


async def _cancel(tasks: Sequence[asyncio.Task[Any]] | set[asyncio.Task[Any]]) -> None:
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
