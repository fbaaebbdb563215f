"""A minimum average rate for streamed transfers (a leaf: the ES client and the body
readers both use it)."""

from __future__ import annotations

import time


class Pace:
    """How long the next piece of a streamed transfer may take so that, past the first
    ``grace_s``, the transfer's average stays at ``rate`` bytes/s (0: no rate). Callers
    also bound each piece on its own. A client that stops reading, or drips a body a byte
    at a time, is cut off instead of holding an ES connection."""

    def __init__(self, rate: int, grace_s: float) -> None:
        self.rate = rate
        self.grace_s = grace_s
        self.start = time.monotonic()
        self.moved = 0

    def allowance(self, n: int = 0) -> float:
        """Seconds the next piece may take (``n``: its size, when it is known already)."""
        self.moved += n
        if self.rate <= 0:
            return float("inf")
        due = self.start + self.grace_s + self.moved / self.rate
        return max(due - time.monotonic(), 0.001)
