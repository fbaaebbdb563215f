"""The client ledger: what each client has recently taken and asked for, in one table.

A client is an address (behind trusted proxies; an IPv6 one by its /64), never a
credential: one a client writes itself would give it a fresh entry per request. Per client
the ledger keeps, all decayed with one half-life (:data:`HALF_LIFE_S`):

* ``used``: pairs admitted to the model (who goes first at the model's queue);
* ``searches`` and ``asked``: searches that needed the model and the pairs they asked for
  (how the model's throughput is shared under overload);

and, not decayed, ``debt_until``: until when its debt of the event loop's CPU runs (how
the loop is shared: a cell rate), and ``seen``: when it last did anything.

The table is bounded: at most :data:`MAX_CLIENTS` entries (the longest unseen goes first),
and an entry whose figures have all faded is dropped as it is met. Pure but for the clock.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sidecar.deadline import now as monotonic

HALF_LIFE_S = 5.0
MAX_CLIENTS = 10_000
#: Below these every figure of an entry has faded: it is forgotten, once it has not been
#: seen for :data:`FORGET_AFTER_S` either (others' recent activity is a figure too).
FADED_PAIRS = 1.0
FADED_SEARCHES = 0.01
FORGET_AFTER_S = 30.0


def client_key(address: object) -> str:
    """Who a request counts against: its address behind trusted proxies, an IPv6 one by its
    /64 (one host or site has a whole /64 to pick fresh addresses from)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return f"ip:{ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"ip:{address}"


def decay(seconds: float) -> float:
    """The factor a figure keeps after ``seconds``."""
    return math.exp2(-max(0.0, seconds) / HALF_LIFE_S)


#: A steady rate r decays to a sum of r times this.
MEAN_LIFE_S = HALF_LIFE_S / math.log(2)


@dataclass(slots=True)
class Client:
    key: str
    #: When the decayed figures were last brought up to date.
    at: float
    used: float = 0.0
    searches: float = 0.0
    asked: float = 0.0
    debt_until: float = 0.0
    seen: float = 0.0

    def age(self, when: float) -> None:
        factor = decay(when - self.at)
        self.used *= factor
        self.searches *= factor
        self.asked *= factor
        self.at = when

    def faded(self, when: float) -> bool:
        return (
            self.used < FADED_PAIRS
            and self.searches < FADED_SEARCHES
            and self.debt_until <= when
            and when - self.seen > FORGET_AFTER_S
        )


class ClientLedger:
    def __init__(
        self, *, max_clients: int = MAX_CLIENTS, clock: Callable[[], float] = monotonic
    ) -> None:
        self.max_clients = max_clients
        self.clock = clock
        #: Least recently seen first.
        self._clients: OrderedDict[str, Client] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, key: object) -> bool:
        return key in self._clients

    def touch(self, key: str) -> Client:
        """``key``'s entry, brought up to date and marked as seen now (made if new)."""
        when = self.clock()
        entry = self._clients.pop(key, None)
        if entry is None:
            entry = Client(key, when)
        entry.age(when)
        entry.seen = when
        self._clients[key] = entry
        self._trim(when)
        return entry

    def peek(self, key: str) -> Client | None:
        """``key``'s entry brought up to date, without marking it seen."""
        entry = self._clients.get(key)
        if entry is not None:
            entry.age(self.clock())
        return entry

    def used(self, key: str) -> float:
        """``key``'s recent use of the model, in pairs."""
        entry = self.peek(key)
        return 0.0 if entry is None else entry.used

    def others_seen_within(self, key: str, seconds: float) -> bool:
        """Whether a client other than ``key`` did anything in the last ``seconds``."""
        when = self.clock()
        for name in reversed(self._clients):  # most recently seen first
            if name != key:
                return when - self._clients[name].seen <= seconds
        return False

    def clients(self) -> Iterator[Client]:
        """Every entry, brought up to date; faded ones are dropped on the way."""
        when = self.clock()
        for name in list(self._clients):
            entry = self._clients[name]
            entry.age(when)
            if entry.faded(when):
                del self._clients[name]
            else:
                yield entry

    def _trim(self, when: float) -> None:
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        # The longest unseen go first once their figures have faded.
        while self._clients:
            oldest = next(iter(self._clients.values()))
            oldest.age(when)
            if not oldest.faded(when) or oldest is next(reversed(self._clients.values())):
                break
            self._clients.popitem(last=False)
