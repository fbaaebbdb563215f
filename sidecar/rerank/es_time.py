"""How long a search usually takes before the model stage starts, per index.

The budget (``rerank.budget_ms``) is what reranking may add to a search. A search that ES
answers slower than usual gets that much less of it, so the slow tails of ES and of the
model do not add up: a reranked search takes about ES's usual time plus the budget, or
ES's own time when that is longer. The usual time is an exponentially weighted mean of
the time from a search's arrival to ES's answer to the widened search (its body read
included), kept per index and endpoint (``_msearch`` apart from ``_search``) for at most
:data:`MAX_INDICES` of them, and used once :data:`MIN_SAMPLES` searches have taught it
(a first answer from ES's request cache must not cut the next searches' budgets).
"""

from __future__ import annotations

from collections import OrderedDict

#: Weight of the newest search.
ALPHA = 0.1
MAX_INDICES = 1024
MIN_SAMPLES = 5


class EsTimes:
    def __init__(self) -> None:
        #: key -> (usual seconds, searches seen, up to MIN_SAMPLES)
        self._usual: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def excess(self, key: str, waited_s: float) -> float:
        """Seconds this search waited beyond the usual time for ``key`` (0 until it is
        known), and learn from it."""
        entry = self._usual.get(key)
        if entry is None:
            self._usual[key] = (waited_s, 1)
        else:
            usual, seen = entry
            self._usual[key] = ((1 - ALPHA) * usual + ALPHA * waited_s, min(seen + 1, MIN_SAMPLES))
        self._usual.move_to_end(key)
        if len(self._usual) > MAX_INDICES:
            self._usual.popitem(last=False)
        if entry is None or entry[1] < MIN_SAMPLES:
            return 0.0
        return max(0.0, waited_s - entry[0])
