"""How much of a window the budget allows: the model's cost, learned from its own answers.

The cost model is one number, seconds per pair as the serving stack delivers it (queueing,
batching, padding and passes included), kept as an exponentially weighted mean of what the
scorer's answers took. An answer's time covers the pairs that were ahead of it too, so each
observation is ``elapsed / (pairs ahead + own pairs)``. A request that ran out of time
before any answer is a lower bound on that cost and raises the estimate when it is above it.

Pure: the engine tells it what happened and asks it what fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Weight of the newest observation.
ALPHA = 0.3


class CostModel:
    def __init__(self, safety: float = 1.2) -> None:
        #: Seconds per pair; None until the first answer.
        self.per_pair: float | None = None
        #: Predictions are multiplied by this before they are compared with a budget.
        self.safety = safety

    def observe(self, elapsed_s: float, own_pairs: int, ahead_pairs: int) -> None:
        if own_pairs <= 0 or elapsed_s <= 0:
            return
        sample = elapsed_s / (own_pairs + max(0, ahead_pairs))
        self.per_pair = (
            sample if self.per_pair is None else (1 - ALPHA) * self.per_pair + ALPHA * sample
        )

    def observe_timeout(self, elapsed_s: float, own_pairs: int, ahead_pairs: int) -> None:
        """Nothing came back within ``elapsed_s``: the cost is at least that."""
        if own_pairs <= 0:
            return
        floor = elapsed_s / (own_pairs + max(0, ahead_pairs))
        if self.per_pair is None or floor > self.per_pair:
            self.per_pair = floor

    def predict(self, pairs: int, ahead_pairs: int) -> float | None:
        """Seconds until ``pairs`` submitted now are answered; None when unknown."""
        if self.per_pair is None:
            return None
        return (pairs + max(0, ahead_pairs)) * self.per_pair * self.safety

    def fit(self, missing: Sequence[bool], remaining_s: float, ahead_pairs: int) -> int:
        """The longest prefix of the window whose missing pairs (``missing[i]``: document
        ``i`` has no cached score) are predicted to be answered within ``remaining_s``."""
        if self.per_pair is None:
            return len(missing)
        affordable = remaining_s / (self.per_pair * self.safety) - max(0, ahead_pairs)
        budget_pairs = math.floor(affordable) if affordable > 0 else 0
        used = 0
        for i, miss in enumerate(missing):
            used += miss
            if used > budget_pairs:
                return i
        return len(missing)
