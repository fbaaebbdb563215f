"""Each client's share of the event loop's CPU on the rerank path.

The model is shared fairly by the gate (:mod:`sidecar.rerank.fair`), but a search costs
CPU before and after the model too: its body parsed and planned, ES's answer decoded,
rewritten and written. For an ordinary search that is a millisecond or two. A
``_msearch`` of 300 sub-searches costs tens of milliseconds, and when its sub-searches
fall back to ES order it is answered at once, so one client sending them back to back
keeps a core busy, which the model then shares: its passes slow down, less of everyone's
window fits the budget, more falls back, and the client's loop only gets faster.

So while the event loop is busy (all clients' rerank-path work together above
:data:`CONTENDED` of a core) and other clients are searching, one client's rerank-path
work is held to ``rerank.load.client_cpu_share`` of a core. Its CPU is measured (the
event loop's thread time over the request's own stretches of work) and charged as a debt
that is paid back at that rate (the generic cell rate algorithm): a client more than
:data:`TOLERANCE_S` in debt waits before its next search goes to ES, never longer than
the search's budget, and that wait comes off the budget. A debt is at most
:data:`MAX_DEBT_S` ahead, so a burst that is over does not hold a client back for long.
A client alone, or on a loop that is not busy (one frontend server for all its users
beside a health check, say), is never held back: what nobody else wants is its to use.
Pure but for the clock it is given.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Debt (seconds ahead of the share) a client may run up before it waits: bursts pass.
TOLERANCE_S = 1.0
#: Another client that searched this recently is searching.
ACTIVE_S = 10.0
#: All clients' metered rerank-path CPU, in cores, above which the loop is busy (decayed
#: over :data:`RATE_HALF_LIFE_S`): below it no one is held back. What is metered is about
#: half of a request's CPU (reading and writing bodies, compression, the loop itself are
#: not), so this is a loop about half busy.
CONTENDED = 0.25
RATE_HALF_LIFE_S = 2.0
#: A debt never runs further ahead than this (past the tolerance).
MAX_DEBT_S = 5.0
MAX_CLIENTS = 10_000


class CpuShare:
    def __init__(
        self,
        share: float,
        *,
        tolerance_s: float = TOLERANCE_S,
        active_s: float = ACTIVE_S,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.share = share
        self.tolerance_s = tolerance_s
        self.active_s = active_s
        self.max_clients = max_clients
        self._clock = clock
        #: Client -> (when its debt is paid, when it last searched); most recent last.
        self._clients: OrderedDict[str, tuple[float, float]] = OrderedDict()
        #: All clients' CPU seconds, decayed, and when that was last updated.
        self._total = (0.0, clock())

    def busy(self) -> float:
        """All clients' recent rerank-path CPU, in cores."""
        spent, at = self._total
        decayed = spent * math.exp2(-(self._clock() - at) / RATE_HALF_LIFE_S)
        # A steady rate r decays to a sum of r * half-life / ln 2.
        return decayed * math.log(2) / RATE_HALF_LIFE_S

    def _others_active(self, client: str, now: float) -> bool:
        # Most recent last: the newest other client is one of the last two entries.
        for name in reversed(self._clients):
            if name != client:
                return now - self._clients[name][1] <= self.active_s
        return False

    def charge(self, client: str, cpu_s: float) -> None:
        """``client``'s request used ``cpu_s`` of the event loop's CPU."""
        now = self._clock()
        cpu_s = max(0.0, cpu_s)
        spent, at = self._total
        self._total = (spent * math.exp2(-(now - at) / RATE_HALF_LIFE_S) + cpu_s, now)
        paid, _ = self._clients.pop(client, (now, now))
        if self._others_active(client, now) and self.busy() >= CONTENDED:
            ahead = now + self.tolerance_s + MAX_DEBT_S
            paid = min(max(paid, now) + cpu_s / self.share, ahead)
        else:
            paid = now  # alone, or nobody short of CPU: nothing is owed to anyone
        self._clients[client] = (paid, now)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def delay(self, client: str) -> float:
        """Seconds ``client``'s next search waits before it goes to ES (0: none)."""
        entry = self._clients.get(client)
        now = self._clock()
        if entry is None or not self._others_active(client, now):
            return 0.0
        return max(0.0, entry[0] - now - self.tolerance_s)

    @contextmanager
    def metered(self, client: str) -> Iterator[None]:
        """Charge ``client`` for the CPU of this stretch of the event loop's work (no
        await inside: another request's work would be charged too)."""
        start = time.thread_time()
        try:
            yield
        finally:
            self.charge(client, time.thread_time() - start)
