"""The batching worker: the one thread that runs a local model.

Concurrent requests are coalesced: the worker takes up to ``max_batch_pairs`` queued items
(oldest request first; a big request may span several batches), sorts them by length and
cuts them into forward passes of at most ``max_batch_tokens`` padded tokens, at the cuts
that make the batch cheapest under the pass costs learned for this model on this device in
this dtype (:mod:`sidecar.scoring.local.passes`). Each request's
outputs are put back in its own item order and folded into scores by the backend.

Requests arrive already tokenized (see :mod:`sidecar.scoring.local.scorer`): the worker
needs the lengths to sort and bound batches, and tokenizing outside this thread overlaps it
with the forward pass of the previous batch instead of adding to it.

The queue is bounded in items (``max_queue_pairs``): past it, callers get ``Overloaded`` at
once. Work whose caller gave up (cancelled, or past its deadline) is dropped before it
reaches the model.

A request's state is its :class:`concurrent.futures.Future`, which any thread may settle or
cancel at once, unlike an asyncio future: the worker settles it, a caller who gives up
cancels it, and the worker skips work whose future is done. The caller awaits it through
``asyncio.wrap_future``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass

import torch

from sidecar.config import WorkerConfig
from sidecar.errors import ModelFailure, Overloaded, RerankTimeout, RerankUnavailable
from sidecar.scoring.base import BatchObserver
from sidecar.scoring.local.backend import Encoded, Item, LocalBackend
from sidecar.scoring.local.passes import (
    PassCost,
    calibration_item,
    measure_costs,
    plan_passes,
)
from sidecar.scoring.local.threads import CpuThreads

log = logging.getLogger("sidecar.worker")

#: Once work is there, how long the worker waits for more to fill a batch: requests that
#: arrive together (an ``_msearch``'s sub-searches) share passes.
BATCH_WAIT_S = 0.001


@dataclass(frozen=True, slots=True)
class Completed:
    scores: list[float]
    #: From submit to the first forward pass that included this request.
    queue_s: float
    #: Forward passes this request took part in (shared with the other requests in them).
    model_s: float


class _Job:
    """One request inside the worker; whether it is still wanted is ``future.done()``."""

    __slots__ = (
        "cursor",
        "deadline",
        "encoded",
        "first_pass",
        "future",
        "model_s",
        "outputs",
        "received",
        "submitted",
    )

    def __init__(self, encoded: Encoded, deadline: float | None) -> None:
        self.encoded = encoded
        self.future: Future[Completed] = Future()
        self.deadline = deadline
        self.submitted = time.monotonic()
        #: Items before this index have been taken by the worker.
        self.cursor = 0
        #: Items whose outputs are in.
        self.received = 0
        self.outputs: torch.Tensor | None = None
        self.first_pass: float | None = None
        self.model_s = 0.0

    @property
    def size(self) -> int:
        return len(self.encoded.items)

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def length(self, index: int) -> int:
        return len(self.encoded.items[index].ids)

    def settle(self, outcome: Completed | RerankUnavailable) -> None:
        # The first outcome stands: a later one (or one for a caller who gave up and
        # cancelled the future) is for nobody.
        with contextlib.suppress(InvalidStateError):
            if isinstance(outcome, Completed):
                self.future.set_result(outcome)
            else:
                self.future.set_exception(outcome)


#: One item of one job: (job, index into job.encoded.items).
_Slot = tuple[_Job, int]


class BatchWorker:
    def __init__(self, backend: LocalBackend, config: WorkerConfig) -> None:
        self._backend = backend
        self._config = config
        self._cond = threading.Condition()
        self._pending: deque[_Job] = deque()
        self._queued = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._threads: CpuThreads | None = None
        #: Jobs with items taken but not all outputs in; touched by the worker thread only.
        self._in_flight: set[_Job] = set()
        configured = config.pass_overhead_tokens
        #: None until measured (then batches are cut by the token budget only).
        self._cost = None if configured is None else PassCost.linear(float(configured))
        self._learning = configured is None
        self.observers: list[BatchObserver] = []

    # --- caller side (event loop) ----------------------------------------------------------

    def start(self, calibrate: Item | None = None, threads: CpuThreads | None = None) -> None:
        """Start the thread; with ``calibrate``, it first times passes of that item to learn
        what passes cost (unless ``pass_overhead_tokens`` is configured); with ``threads``,
        each pass first sets torch's thread count to the cores other work leaves free."""
        if self._thread is not None:
            raise RuntimeError("the worker is already started")
        self._threads = threads
        if self._config.pass_overhead_tokens is not None:
            calibrate = None
        self._thread = threading.Thread(
            target=self._main, args=(calibrate,), name="rerank-model", daemon=True
        )
        self._thread.start()

    @property
    def pass_overhead_tokens(self) -> float:
        """A pass's fixed cost in tokens' worth of the largest measured pass; inf unknown."""
        return math.inf if self._cost is None else self._cost.overhead_tokens()

    @property
    def pass_costs(self) -> str:
        """The learned pass costs, for the logs ("" until measured)."""
        return "" if self._cost is None else self._cost.describe()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closing

    @property
    def queued_pairs(self) -> int:
        return self._queued

    def check_capacity(self, pairs: int) -> None:
        """Raise at once if ``pairs`` more items would not be accepted right now."""
        with self._cond:
            self._check_capacity(pairs)

    def _check_capacity(self, pairs: int) -> None:
        if self._closing or self._thread is None:
            raise RerankUnavailable("the model worker is not running")
        if self._queued + pairs > self._config.max_queue_pairs:
            raise Overloaded(
                f"model queue full ({self._queued} pairs waiting, "
                f"{pairs} more would exceed {self._config.max_queue_pairs})"
            )

    async def run(self, encoded: Encoded, *, deadline: float | None = None) -> Completed:
        """Score one tokenized request; ``deadline`` is on the ``time.monotonic()`` clock."""
        job = _Job(encoded, deadline)
        with self._cond:
            self._check_capacity(job.size)
            self._pending.append(job)
            self._queued += job.size
            self._cond.notify()
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            self._abandon(job)
            raise

    def _abandon(self, job: _Job) -> None:
        # wrap_future would cancel it too, but only once the event loop gets to it.
        job.future.cancel()
        with self._cond:
            if job in self._pending:
                self._pending.remove(job)
                self._queued -= job.size - job.cursor

    def close(self, timeout: float | None = None) -> None:
        """Stop taking work, fail what waits, let the current pass finish, join the thread."""
        with self._cond:
            self._closing = True
            waiting = list(self._pending)
            self._pending.clear()
            self._queued = 0
            self._cond.notify_all()
        for job in waiting:
            job.settle(RerankUnavailable("the reranker is shutting down"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --- worker thread -----------------------------------------------------------------------

    def _main(self, calibrate: Item | None) -> None:
        try:
            with torch.inference_mode():
                if calibrate is not None:
                    self._cost = measure_costs(
                        self._backend.forward,
                        calibration_item(calibrate),
                        max_rows=self._config.max_batch_pairs,
                        max_tokens=self._config.max_batch_tokens,
                        observe=self._observed,
                    )
                while (slots := self._next_slots()) is not None:
                    self._run_slots(slots)
        except Exception:
            # A bug here must not leave callers waiting for futures nobody will settle.
            log.exception("the model worker crashed")
        finally:
            with self._cond:
                self._closing = True
                waiting = list(self._pending)
                self._pending.clear()
                self._queued = 0
            for job in [*waiting, *self._in_flight]:
                job.settle(RerankUnavailable("the model worker stopped"))
            self._in_flight.clear()

    def _observed(self, pairs: int, padded_tokens: int, seconds: float) -> None:
        for observe in self.observers:
            observe(pairs, padded_tokens, seconds)

    def _next_slots(self) -> list[_Slot] | None:
        with self._cond:
            while not self._closing and not self._pending:
                self._cond.wait()
            if self._closing:
                return None
            self._wait_for_more()
            return self._take()

    def _wait_for_more(self) -> None:
        wait_s = BATCH_WAIT_S
        if wait_s <= 0:
            return
        until = time.monotonic() + wait_s
        while not self._closing and self._queued < self._config.max_batch_pairs:
            left = until - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)

    def _take(self) -> list[_Slot]:
        now = time.monotonic()
        limit = self._config.max_batch_pairs
        slots: list[_Slot] = []
        while self._pending and len(slots) < limit:
            job = self._pending[0]
            if job.future.done() or job.expired(now):
                self._pending.popleft()
                self._queued -= job.size - job.cursor
                # Settling a job whose caller gave up does nothing; an expired one is told.
                self._drop(job, RerankTimeout("deadline passed while queued"))
                continue
            take = min(job.size - job.cursor, limit - len(slots))
            slots.extend((job, index) for index in range(job.cursor, job.cursor + take))
            job.cursor += take
            self._queued -= take
            self._in_flight.add(job)
            if job.cursor == job.size:
                self._pending.popleft()
        return slots

    def _run_slots(self, slots: list[_Slot]) -> None:
        slots.sort(key=lambda slot: slot[0].length(slot[1]), reverse=True)
        for group in self._passes(slots):
            if self._closing:
                # Shutting down: the rest of this batch is failed with everything in flight.
                return
            self._run_pass(group)

    def _passes(self, slots: list[_Slot]) -> Iterator[list[_Slot]]:
        """Cut length-sorted slots (longest first) into passes, see local.passes."""
        lengths = [job.length(index) for job, index in slots]
        budget = self._config.max_batch_tokens
        if self._cost is None:
            plan = plan_passes(lengths, budget=budget, overhead=math.inf)
        else:
            plan = plan_passes(lengths, budget=budget, cost=self._cost)
        for positions in plan:
            yield slots[positions.start : positions.stop]

    def _run_pass(self, group: list[_Slot]) -> None:
        now = time.monotonic()
        for job in {job for job, _ in group}:
            if job.future.done():
                self._in_flight.discard(job)
            elif job.expired(now):
                self._drop(job, RerankTimeout("deadline passed while being scored"))
        live = [slot for slot in group if not slot[0].future.done()]
        if not live:
            return
        if self._threads is not None:
            self._threads.before_pass()
        started = time.monotonic()
        try:
            out = self._backend.forward([job.encoded.items[index] for job, index in live])
        except Exception:
            # Whatever the model raised (OOM, a bad input), its callers fall back and the
            # worker carries on with the next batch.
            log.exception("forward pass over %d pairs failed", len(live))
            for job in {job for job, _ in live}:
                self._drop(job, ModelFailure("the model failed on this batch"))
            return
        elapsed = time.monotonic() - started
        if self._threads is not None:
            self._threads.after_pass()
        padded = len(live) * max(job.length(index) for job, index in live)
        if self._learning and self._cost is not None:
            self._cost.observe(padded, elapsed)
        self._observed(len(live), padded, elapsed)
        if out.shape[0] != len(live):
            log.error("forward pass over %d pairs returned %d outputs", len(live), out.shape[0])
            for job in {job for job, _ in live}:
                self._drop(job, ModelFailure("the model returned a wrong number of scores"))
            return
        placed: dict[_Job, tuple[list[int], list[int]]] = {}
        for row, (job, index) in enumerate(live):
            rows, positions = placed.setdefault(job, ([], []))
            rows.append(row)
            positions.append(index)
        for job, (rows, positions) in placed.items():
            if job.outputs is None:
                job.outputs = out.new_empty((job.size, *out.shape[1:]))
                job.first_pass = started
            job.outputs[torch.tensor(positions)] = out[torch.tensor(rows)]
            job.received += len(rows)
            job.model_s += elapsed
            if job.received == job.size:
                self._finish(job, job.outputs)

    def _finish(self, job: _Job, outputs: torch.Tensor) -> None:
        self._in_flight.discard(job)
        try:
            scores = self._backend.combine(job.encoded, outputs)
        except RerankUnavailable as exc:
            job.settle(exc)
            return
        except Exception:
            log.exception("combining the model's outputs failed")
            job.settle(ModelFailure("the model's outputs could not be combined"))
            return
        queue_s = (job.first_pass or job.submitted) - job.submitted
        job.settle(Completed(scores, queue_s, job.model_s))

    def _drop(self, job: _Job, exc: RerankUnavailable) -> None:
        """Fail a job from the worker thread, forgetting it."""
        self._in_flight.discard(job)
        job.settle(exc)
