"""The model meter: what the model costs, learned from its own work, in one place.

Whoever runs the model tells the meter about every piece of work it finished, with one
call, :meth:`ModelMeter.observe` (pairs, padded tokens, seconds): a local model's worker
after each forward pass (its warm-up passes included, so the cost is known before the first
search), a remote scorer after each answer. Remote answers can overlap; the meter counts
the time the model was busy (the union of the observed intervals), so the cost of
concurrent answers is not counted twice.

From that the meter answers, in seconds per pair:

* :attr:`per_pair`: the cost the budget is planned with. It follows recent work quickly
  (ratio of decayed sums, :data:`ALPHA`), so big passes weigh more than a small tail. A
  remote call that ran out of time before any answer (:meth:`unanswered`) is a lower bound
  that raises it until answers bring it down again;
* :attr:`answered`: the same from answers only: hang detection (:meth:`hang`) must not be
  raised by the lower bound, or a model that hangs would soon look merely slow;
* :attr:`steady`: the same over the last few dozen passes (:data:`STEADY_ALPHA`), so one
  pass that shared the CPU with a burst of other work does not move how the model's
  throughput is shared.

Queue waits are not in any of them: the fair queue predicts those from the pairs ahead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from sidecar.deadline import now as monotonic

#: Weight of the newest observation in the planning estimate.
ALPHA = 0.3
#: The same for the steady estimate.
STEADY_ALPHA = 0.05
#: Predictions are multiplied by this before they are compared with a budget.
SAFETY = 1.2
#: A part with the model this many times longer than predicted (plus the slowest recent
#: pass, which a part may wait for) without an answer is a hang.
HANG_FACTOR = 3.0
#: No part is taken for hung sooner than this, however quick the model has been.
MIN_HANG_S = 0.1


@dataclass(frozen=True)
class Capacity:
    """What the model can do for searches, at the cost learned so far."""

    pairs_per_s: float
    #: Hits of a window that fit one search's budget when the model is otherwise idle.
    k: int
    #: Searches per second the model reranks at that K.
    searches_per_s: float
    budget_s: float
    window: int
    min_window: int

    @property
    def enough(self) -> bool:
        return self.k >= self.min_window

    def warning(self) -> str | None:
        """What to tell an operator when searches cannot be reranked in time, or None."""
        if self.enough:
            return None
        return (
            f"the model answers {self.pairs_per_s:.1f} pairs/s here: {self.k} of a "
            f"{self.window}-hit window fit the {self.budget_s * 1000:.0f} ms budget, fewer "
            f"than rerank.min_window ({self.min_window}), so searches keep ES order "
            "(fallback; reason=budget). What helps: a GPU, a remote rerank server, a "
            "smaller model, model.dtype bfloat16 or model.cpu_quantization dynamic_int8, "
            "or a larger rerank.budget_ms"
        )


class ModelMeter:
    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        self._clock = clock
        #: Decayed (busy seconds, pairs): fast and steady.
        self._fast = (0.0, 0.0)
        self._steady = (0.0, 0.0)
        #: Seconds per pair at least, from remote calls that got no answer; None: none.
        self._floor: float | None = None
        #: The longest recent pass, decaying (a remote answer counts as one pass).
        self.slowest_s = 0.0
        #: Where the last observed interval ended (answers may overlap).
        self._busy_until = -math.inf
        #: Passes and answers observed.
        self.observed = 0
        #: When the model last finished a piece of work (the monotonic clock).
        self.last_seen = -math.inf

    # --- what the model did ---------------------------------------------------------------

    def observe(self, pairs: int, tokens: int, seconds: float) -> None:
        """The model finished ``pairs`` (``tokens`` padded tokens) in the ``seconds``
        before now. Called from the worker's thread or the event loop: each figure is
        replaced whole."""
        if pairs <= 0 or seconds <= 0 or not math.isfinite(seconds):
            return
        end = self._clock()
        busy = max(0.0, end - max(end - seconds, self._busy_until))
        self._busy_until = max(self._busy_until, end)
        self._fast = _decay(self._fast, busy, pairs, ALPHA)
        self._steady = _decay(self._steady, busy, pairs, STEADY_ALPHA)
        self.slowest_s = max(seconds, (1 - ALPHA) * self.slowest_s)
        if self._floor is not None:
            self._floor = (1 - ALPHA) * self._floor + ALPHA * seconds / pairs
            if self.answered is not None and self._floor <= self.answered:
                self._floor = None
        self.observed += 1
        self.last_seen = end

    def unanswered(self, pairs: int, seconds: float) -> None:
        """A remote call of ``pairs`` (those ahead of it included) got no answer within
        ``seconds``: planning assumes at least that cost (hang detection does not)."""
        if pairs <= 0 or seconds <= 0:
            return
        bound = seconds / pairs
        if self.per_pair is None or bound > self.per_pair:
            self._floor = bound

    # --- what it costs ----------------------------------------------------------------------

    @property
    def answered(self) -> float | None:
        busy, pairs = self._fast
        return busy / pairs if pairs > 0 else None

    @property
    def per_pair(self) -> float | None:
        answered = self.answered
        if self._floor is None:
            return answered
        return self._floor if answered is None else max(answered, self._floor)

    @property
    def steady(self) -> float | None:
        busy, pairs = self._steady
        return busy / pairs if pairs > 0 else None

    @property
    def pairs_per_s(self) -> float | None:
        """The model's throughput, from the steady estimate."""
        steady = self.steady
        return None if steady is None or steady <= 0 else 1.0 / steady

    def seconds_for(self, pairs: int) -> float | None:
        """Predicted seconds for ``pairs`` (with the safety margin); None while unknown."""
        per_pair = self.per_pair
        return None if per_pair is None else pairs * per_pair * SAFETY

    def pairs_within(self, seconds: float) -> float:
        """Pairs predicted to be answered within ``seconds`` (inf while unknown)."""
        per_pair = self.per_pair
        if per_pair is None or per_pair <= 0:
            return math.inf
        return max(0.0, seconds) / (per_pair * SAFETY)

    def quick_pairs(self, seconds: float) -> int | None:
        """Pairs the model answers in ``seconds`` at the rate its answers show."""
        answered = self.answered
        if answered is None or answered <= 0:
            return None
        return math.floor(seconds / answered)

    def answered_since(self, since: float) -> float:
        """Pairs the model is predicted to have answered of the work it had at ``since``
        (its clock): from then, or from the end of its last piece of work if that came
        later, at the cost the budget is planned with (margin included, so that no more
        is counted as done than planning would predict). Unknown cost: none."""
        per_pair = self.per_pair
        if per_pair is None or per_pair <= 0:
            return 0.0
        return max(0.0, self._clock() - max(since, self.last_seen)) / (per_pair * SAFETY)

    def hang(self, pairs: int, elapsed_s: float) -> bool:
        """Whether ``pairs`` (those ahead included) with the model for ``elapsed_s``
        without an answer is a hang: :data:`HANG_FACTOR` times longer than the model's
        answers predict, plus the slowest recent pass (a part may wait for one under way,
        and a small part costs more than its pairs' share)."""
        answered = self.answered
        if answered is None:
            return False  # nothing was predicted: no answer is not a fault
        expected = pairs * answered * SAFETY
        return elapsed_s > max((expected + self.slowest_s) * HANG_FACTOR, MIN_HANG_S)

    def capacity(self, budget_s: float, window: int, min_window: int) -> Capacity | None:
        """What the model can do for a search with this budget and window; None while
        its cost is unknown."""
        per_pair, rate = self.per_pair, self.pairs_per_s
        if per_pair is None or rate is None:
            return None
        k = min(window, math.floor(budget_s / (per_pair * SAFETY)))
        searches = rate / k if k > 0 else 0.0
        return Capacity(rate, k, searches, budget_s, window, min_window)


def _decay(
    sums: tuple[float, float], seconds: float, pairs: int, alpha: float
) -> tuple[float, float]:
    """Decayed sums of (seconds, pairs), so that big passes weigh more than a small tail."""
    spent, done = sums
    if done == 0:
        return (seconds, float(pairs))
    return ((1 - alpha) * spent + alpha * seconds, (1 - alpha) * done + alpha * pairs)
