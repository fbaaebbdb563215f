"""How much of its window one search may take while searches ask for more than the model answers.

Choosing K by the budget alone is first come, first served. Under steady overload the
search that finds the model idle takes all the window its budget allows, the next ones
find that backlog ahead of them, fewer than ``min_window`` hits fit, and they fall back
(``fallback; reason=budget``): at twice the model's capacity a fifth of the searches got
nothing while others got the whole window.

So the engine tells :class:`Demand` of every search that needs the model (its client and
the pairs it is missing) and of every rerank-API request. Per client, Demand keeps the
rate of those requests and of their pairs, each decayed with a half-life of
:data:`HALF_LIFE_S`. The model's throughput (pairs per second at the learned cost) times
:data:`UTILIZATION` is shared between the clients max-min fairly, on their pair rates
(water-filling): a client asking for less than an equal share gets all of it, and the rest
is shared by the others. A client asking for more than its share gets, per search, its
share divided by its search rate: K is capped there, and the budget still decides below
the cap. While the model answers all that is asked of it, nobody is capped and K is
limited by the budget alone, as before.

The level of the water is worked out at most every :data:`REFRESH_S`, and at most
:data:`MAX_CLIENTS` clients are kept (the longest unseen is forgotten first; one that has
been quiet for long drops out by itself), so a flood of addresses costs bounded time and
memory. Pure but for the clock it is given.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

HALF_LIFE_S = 5.0
#: The share of the model's throughput that K is planned for: the rest absorbs the noise
#: of arrivals and of the model's speed.
UTILIZATION = 0.85
REFRESH_S = 0.25
MAX_CLIENTS = 10_000
#: A client whose decayed request count is below this has stopped asking.
QUIET = 0.01


@dataclass
class _Rates:
    #: Decayed requests and pairs, as of ``at``.
    requests: float
    pairs: float
    at: float


class Demand:
    def __init__(
        self,
        *,
        half_life_s: float = HALF_LIFE_S,
        utilization: float = UTILIZATION,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.half_life_s = half_life_s
        self.utilization = utilization
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Rates] = OrderedDict()
        #: Pairs per second a client may ask for (inf: everyone gets what they ask), and
        #: when it was worked out.
        self._level = math.inf
        self._level_at = -math.inf

    def _decayed(self, rates: _Rates, now: float) -> _Rates:
        factor = 0.5 ** (max(0.0, now - rates.at) / self.half_life_s)
        return _Rates(rates.requests * factor, rates.pairs * factor, now)

    def arrive(self, client: str, pairs: int) -> None:
        """A request of ``client`` that asks the model for ``pairs``."""
        now = self._clock()
        old = self._clients.pop(client, None)
        rates = _Rates(0.0, 0.0, now) if old is None else self._decayed(old, now)
        rates.requests += 1
        rates.pairs += max(0, pairs)
        self._clients[client] = rates
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def cap(self, client: str, seconds_per_pair: float | None) -> int | None:
        """The most pairs one request of ``client`` should take now, or None for no cap
        (the model answers all that is asked of it, or its cost is not known yet)."""
        if seconds_per_pair is None or seconds_per_pair <= 0:
            return None
        now = self._clock()
        supply = self.utilization / seconds_per_pair
        if now - self._level_at >= REFRESH_S:
            self._refresh(now, supply)
        rates = self._clients.get(client)
        if rates is None or math.isinf(self._level):
            return None
        mine = self._decayed(rates, now)
        if mine.pairs <= self._level * self._per_rate or mine.requests <= 0:
            return None
        return math.floor(self._level * self._per_rate / mine.requests)

    @property
    def _per_rate(self) -> float:
        """Decayed sums are rates times this (the mean life of an event)."""
        return self.half_life_s / math.log(2)

    def _refresh(self, now: float, supply: float) -> None:
        demands = []
        for client in list(self._clients):
            rates = self._decayed(self._clients[client], now)
            if rates.requests < QUIET:
                del self._clients[client]
            else:
                demands.append(rates.pairs / self._per_rate)
        self._level = water_level(demands, supply)
        self._level_at = now


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
