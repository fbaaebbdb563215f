"""How long a search usually takes before the model stage starts, per index.

The budget (``rerank.budget_ms``) is what reranking may add to a search. A search that ES
answers slower than usual gets that much less of it, so the slow tails of ES and of the
model do not add up: a reranked search takes about ES's usual time plus the budget, or
ES's own time when that is longer. The usual time is an exponentially weighted mean of
the time from a search's arrival to the start of its model stage (ES answering the widened
search, and reading and parsing its answer), kept per index for at most
:data:`MAX_INDICES` indices.
"""

from __future__ import annotations

from collections import OrderedDict

#: Weight of the newest search.
ALPHA = 0.1
MAX_INDICES = 1024


class EsTimes:
    def __init__(self) -> None:
        self._usual: OrderedDict[str, float] = OrderedDict()

    def excess(self, index: str, waited_s: float) -> float:
        """Seconds this search waited beyond its index's usual time (0 the first time),
        and learn from it."""
        usual = self._usual.get(index)
        self._usual[index] = waited_s if usual is None else (1 - ALPHA) * usual + ALPHA * waited_s
        self._usual.move_to_end(index)
        if len(self._usual) > MAX_INDICES:
            self._usual.popitem(last=False)
        return 0.0 if usual is None else max(0.0, waited_s - usual)
