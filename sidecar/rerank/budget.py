"""How much of a window the budget allows: the model's cost, learned from its own work.

The cost is one number, seconds per pair. Where it is learned from depends on the backend:

* a local model tells it about every forward pass of its worker (pairs, seconds): the
  estimate is the ratio of exponentially decayed sums of both, so big passes weigh more
  than a one-pair tail. Queue waits are not in it: they are predicted from the pairs ahead
  (:class:`Backlog`), which the engine counts itself. A request that ran out of time
  teaches nothing: the passes keep telling the truth, and an estimate that never saw a
  stall recovers as soon as the model is quick again.
* a remote server is only seen through its answers: each is ``elapsed / (pairs ahead +
  own pairs)``, and a request that ran out of time before any answer is a lower bound
  that raises the estimate when it is above it.

Hang detection (:meth:`CostModel.predict_answer`) uses the estimate learned from answers
and passes only. A lower bound from timeouts must not raise it, or a model that hangs would
soon look merely slow, and a hang would never count as one.

Pure: the engine tells it what happened and asks it what fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Weight of the newest observation.
ALPHA = 0.3
#: The same for the steady estimate (throughput over the last few dozen passes): a pass
#: that shared the CPU with a burst of other work must not move how the model is shared.
STEADY_ALPHA = 0.05


@dataclass(frozen=True)
class Backlog:
    """What a new request of one client waits behind.

    ``with_model``: pairs admitted and not answered yet; ``own_waiting``: this client's
    pairs waiting for admission (its own requests go first come, first served);
    ``own_usage``: its recent use of the model; ``others``: (recent use, waiting pairs) of
    every other waiting client. Admission goes to the lightest user first
    (:mod:`sidecar.rerank.fair`), so another client is served ahead of this one until its
    use has caught up with this client's.
    """

    with_model: int = 0
    own_waiting: int = 0
    own_usage: float = 0.0
    others: tuple[tuple[float, int], ...] = ()

    def before(self, own: int) -> int:
        """Pairs answered before the last of ``own`` new pairs of this client, them included."""
        mine = self.own_waiting + max(0, own)
        reach = self.own_usage + mine
        ahead = sum(min(waiting, max(0, math.ceil(reach - used))) for used, waiting in self.others)
        return self.with_model + mine + ahead


class CostModel:
    def __init__(self, safety: float = 1.2) -> None:
        #: Seconds per pair that K is chosen by; None until the first answer.
        self.per_pair: float | None = None
        #: Seconds per pair from answers and passes only (hang detection).
        self.answered: float | None = None
        #: Predictions are multiplied by this before they are compared with a budget.
        self.safety = safety
        #: Decayed (seconds, pairs) of the worker's passes.
        self._passes = (0.0, 0.0)
        #: Seconds per pair over many passes or answers (sharing the model's throughput).
        self.steady: float | None = None
        self._steady = (0.0, 0.0)
        #: The longest recent pass, decaying (a remote call counts as one pass).
        self.slowest_pass_s = 0.0

    def observe_pass(self, pairs: int, seconds: float) -> None:
        """A forward pass of ``pairs`` took ``seconds`` (called from the worker's thread:
        one tuple and two floats are replaced, each at once)."""
        if pairs <= 0 or seconds <= 0:
            return
        self._passes = _decay(self._passes, seconds, pairs, ALPHA)
        self._steady = _decay(self._steady, seconds, pairs, STEADY_ALPHA)
        self.steady = self._steady[0] / self._steady[1]
        estimate = self._passes[0] / self._passes[1]
        self.slowest_pass_s = max(seconds, (1 - ALPHA) * self.slowest_pass_s)
        self.answered = self.per_pair = estimate

    def observe(self, elapsed_s: float, own_pairs: int, ahead_pairs: int) -> None:
        """A remote answer: ``own_pairs`` came back after ``elapsed_s``, behind ``ahead_pairs``."""
        if own_pairs <= 0 or elapsed_s <= 0:
            return
        sample = elapsed_s / (own_pairs + max(0, ahead_pairs))
        self.slowest_pass_s = max(elapsed_s, (1 - ALPHA) * self.slowest_pass_s)
        self.answered = _ewma(self.answered, sample)
        self.per_pair = _ewma(self.per_pair, sample)
        self.steady = _ewma(self.steady, sample, STEADY_ALPHA)

    def observe_timeout(self, elapsed_s: float, own_pairs: int, ahead_pairs: int) -> None:
        """Nothing came back from a remote server within ``elapsed_s``: the cost is at
        least that (for choosing K; hang detection keeps what answers said)."""
        if own_pairs <= 0:
            return
        floor = elapsed_s / (own_pairs + max(0, ahead_pairs))
        if self.per_pair is None or floor > self.per_pair:
            self.per_pair = floor

    def predict(self, pairs: int, backlog: Backlog) -> float | None:
        """Seconds until ``pairs`` submitted now are answered; None when unknown."""
        if self.per_pair is None:
            return None
        return backlog.before(pairs) * self.per_pair * self.safety

    def predict_answer(self, pairs: int, backlog: Backlog) -> float | None:
        """The same from what answers said (a timeout's lower bound left out)."""
        if self.answered is None:
            return None
        return backlog.before(pairs) * self.answered * self.safety

    def fit(
        self,
        missing: Sequence[bool],
        remaining_s: float,
        backlog: Backlog,
        max_pairs: int | None = None,
    ) -> int:
        """The longest prefix of the window whose missing pairs (``missing[i]``: document
        ``i`` has no cached score) are predicted to be answered within ``remaining_s``,
        and are at most ``max_pairs``."""
        affordable = (
            math.inf if self.per_pair is None else remaining_s / (self.per_pair * self.safety)
        )
        used = 0
        for i, miss in enumerate(missing):
            used += miss
            if miss and (
                (max_pairs is not None and used > max_pairs) or backlog.before(used) > affordable
            ):
                return i
        return len(missing)

    def pairs_in(self, seconds: float) -> int | None:
        """Pairs the model answers in ``seconds`` at the learned rate; None when unknown."""
        if self.answered is None or self.answered <= 0:
            return None
        return math.floor(seconds / self.answered)


def _ewma(current: float | None, sample: float, alpha: float = ALPHA) -> float:
    return sample if current is None else (1 - alpha) * current + alpha * sample


def _decay(
    sums: tuple[float, float], seconds: float, pairs: int, alpha: float
) -> tuple[float, float]:
    """Decayed sums of (seconds, pairs), so that big passes weigh more than a small tail."""
    spent, done = sums
    if done == 0:
        return (seconds, float(pairs))
    return ((1 - alpha) * spent + alpha * seconds, (1 - alpha) * done + alpha * pairs)
