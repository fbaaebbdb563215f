"""Each client's share of the event loop's CPU on the rerank path.

The model is shared fairly by the gate (:mod:`sidecar.rerank.fair`), but a search costs
CPU before and after the model too: its body parsed and planned, ES's answer decoded,
rewritten and written. For an ordinary search that is a millisecond or two. A
``_msearch`` of 300 sub-searches costs tens of milliseconds, and when its sub-searches
fall back to ES order it is answered at once, so one client sending them back to back
keeps a core busy, which the model then shares: its passes slow down, less of everyone's
window fits the budget, more falls back, and the client's loop only gets faster.

So while other clients are searching, one client's rerank-path work is held to
``rerank.load.client_cpu_share`` of a core. Its CPU is measured (the event loop's thread
time over the request's own stretches of work) and charged as a debt that is paid back
at that rate (the generic cell rate algorithm): a client more than
:data:`TOLERANCE_S` in debt waits before its next search goes to ES, never longer than
the search's budget, and that wait comes off the budget. A client alone is never held
back: what nobody else wants is its to use. Pure but for the clock it is given.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Debt (seconds ahead of the share) a client may run up before it waits: bursts pass.
TOLERANCE_S = 1.0
#: Another client that searched this recently is searching.
ACTIVE_S = 10.0
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

    def _others_active(self, client: str, now: float) -> bool:
        # Most recent last: the newest other client is one of the last two entries.
        for name in reversed(self._clients):
            if name != client:
                return now - self._clients[name][1] <= self.active_s
        return False

    def charge(self, client: str, cpu_s: float) -> None:
        """``client``'s request used ``cpu_s`` of the event loop's CPU."""
        now = self._clock()
        paid, _ = self._clients.pop(client, (now, now))
        if self._others_active(client, now):
            paid = max(paid, now) + max(0.0, cpu_s) / self.share
        else:
            paid = now  # alone: nothing is owed to anyone
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
