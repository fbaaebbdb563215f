"""A request's time: one :class:`Deadline`, on one monotonic clock, made when it arrives.

The budget (``rerank.budget_ms``) is what reranking may add to a search beyond ES's usual
time. So a search's model stage ends at::

    arrived + budget + min(what ES took, what ES usually takes)

where "what ES took" runs from arrival to ES's answer less the time the search was held
back for its client's CPU share (that hold is spent budget). A search that ES answers slower
than usual gets that much less of the budget, so the slow tails of ES and of the model do
not add up, and a held search gets less by the time it was held: a reranked search takes
about ES's usual time plus the budget, or ES's own time when that is longer.

ES's usual time is an exponentially weighted mean per index and endpoint
(:class:`UsualEsTime`), used once :data:`MIN_SAMPLES` searches have taught it (a first
answer from ES's request cache must not cut the next searches' budgets).

Every scorer takes a deadline instead of a timeout; a deadline without a budget (the
rerank API's) is simply ``Deadline.after(seconds)``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

#: The one clock every deadline, wait and estimate in the admission machinery reads.
now = time.monotonic

#: Weight of the newest search in ES's usual time.
ES_ALPHA = 0.1
#: Indices (and endpoints) whose usual time is kept at once.
MAX_INDICES = 1024
MIN_SAMPLES = 5


@dataclass
class Deadline:
    """When a request's reranking must be done. ``credit_s`` is ES's time credited to it
    (0 until ES answered); ``held_s`` the time it was held back before ES was asked."""

    budget_s: float
    arrived: float = field(default_factory=now)
    credit_s: float = 0.0
    held_s: float = 0.0

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now (no ES stage before it)."""
        return cls(seconds)

    @property
    def end(self) -> float:
        return self.arrived + self.budget_s + self.credit_s

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.end - now())

    @property
    def expired(self) -> bool:
        return now() >= self.end

    def within(self, budget_s: float) -> Deadline:
        """This request's deadline for a part with a budget of its own (an ``_msearch``
        sub-search whose index has a shorter one): never later than this one."""
        return replace(self, budget_s=min(self.budget_s, budget_s))

    def held(self, seconds: float) -> None:
        """The request was held back for ``seconds`` before it went to ES."""
        self.held_s += max(0.0, seconds)

    def es_answered(self, usual: UsualEsTime, key: str) -> None:
        """ES has answered: credit what it took, up to its usual time for ``key``, and
        teach the usual time."""
        took = max(0.0, now() - self.arrived - self.held_s)
        usual_s = usual.learn(key, took)
        self.credit_s = took if usual_s is None else min(took, usual_s)


class UsualEsTime:
    """How long a search usually takes from arrival to ES's answer, per index and endpoint,
    for at most :data:`MAX_INDICES` of them (the longest unused is forgotten first)."""

    def __init__(self) -> None:
        #: key -> (usual seconds, searches seen, up to MIN_SAMPLES)
        self._usual: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def learn(self, key: str, took_s: float) -> float | None:
        """The usual time for ``key`` before this search (None while unknown), and learn
        ``took_s`` from it."""
        entry = self._usual.get(key)
        if entry is None:
            self._usual[key] = (took_s, 1)
        else:
            usual, seen = entry
            mean = (1 - ES_ALPHA) * usual + ES_ALPHA * took_s
            self._usual[key] = (mean, min(seen + 1, MIN_SAMPLES))
        self._usual.move_to_end(key)
        if len(self._usual) > MAX_INDICES:
            self._usual.popitem(last=False)
        if entry is None or entry[1] < MIN_SAMPLES:
            return None
        return entry[0]

    def __len__(self) -> int:
        return len(self._usual)
