"""How much of its window one search may take while searches ask for more than the model
answers.

Choosing K by the budget alone is first come, first served. Under steady overload the
search that finds the model idle takes all the window its budget allows, the next ones find
that backlog ahead of them, fewer than ``rerank.min_window`` hits fit, and they fall back:
at twice the model's capacity a fifth of the searches got nothing while others got the
whole window.

So every search that needs the model is counted in its client's ledger entry (one search,
and the pairs it is missing). The model's throughput (pairs per second at the steady
cost) times :data:`UTILIZATION` is shared between the clients max-min fairly on their pair
rates (water-filling): a client asking for less than an equal share gets all of it, and
the rest is shared by the others. A client asking for more than its share gets, per search,
its share divided by its search rate. While the model answers all that is asked of it,
nobody is capped and K is limited by the budget alone.

The level of the water is worked out at most every :data:`REFRESH_S`, over the ledger's
clients (bounded; quiet ones drop out by themselves).
"""

from __future__ import annotations

import math

from sidecar.admission.ledger import MEAN_LIFE_S, ClientLedger

#: The share of the model's throughput that K is planned for: the rest absorbs the noise
#: of arrivals and of the model's speed.
UTILIZATION = 0.85
REFRESH_S = 0.25


class ThroughputShare:
    def __init__(self, ledger: ClientLedger, *, utilization: float = UTILIZATION) -> None:
        self.ledger = ledger
        self.utilization = utilization
        #: Pairs per second a client may ask for (inf: everyone gets what they ask), and
        #: when it was worked out.
        self._level = math.inf
        self._level_at = -math.inf

    def arrive(self, client: str, pairs: int) -> None:
        """A search of ``client`` that asks the model for ``pairs``."""
        entry = self.ledger.touch(client)
        entry.searches += 1
        entry.asked += max(0, pairs)

    def cap(self, client: str, seconds_per_pair: float | None) -> int | None:
        """The most pairs one search of ``client`` should take now, or None for no cap
        (the model answers all that is asked of it, or its cost is not known yet)."""
        if seconds_per_pair is None or seconds_per_pair <= 0:
            return None
        when = self.ledger.clock()
        if when - self._level_at >= REFRESH_S:
            self._level = water_level(
                [c.asked / MEAN_LIFE_S for c in self.ledger.clients()],
                self.utilization / seconds_per_pair,
            )
            self._level_at = when
        entry = self.ledger.peek(client)
        if entry is None or math.isinf(self._level):
            return None
        allowed = self._level * MEAN_LIFE_S  # as a decayed sum, like ``asked``
        if entry.asked <= allowed or entry.searches <= 0:
            return None
        return math.floor(allowed / entry.searches)


def water_level(demands: list[float], supply: float) -> float:
    """The max-min fair cap on ``demands`` that shares out ``supply``: each demand gets
    min(demand, level), and the level is as high as the supply allows; inf when the
    supply covers every demand."""
    remaining = supply
    ordered = sorted(demands)
    for i, demand in enumerate(ordered):
        fair = remaining / (len(ordered) - i)
        if demand > fair:
            return max(0.0, fair)
        remaining -= demand
    return math.inf
