"""Each client's share of the event loop's CPU on the rerank path.

The model is shared fairly by its queue, but a search costs CPU before and after the model
too: its body parsed and planned, ES's answer decoded, rewritten and written. For an
ordinary search that is a millisecond or two. A ``_msearch`` of 300 sub-searches costs tens
of milliseconds, and when its sub-searches fall back to ES order it is answered at once,
so one client sending them back to back keeps a core busy, which the model then shares:
its passes slow down, less of everyone's window fits the budget, more falls back, and the
client's loop only gets faster.

So while the event loop is busy (all clients' metered work above :data:`CONTENDED` of a
core) and other clients are searching, one client's rerank-path work is held to
:data:`CLIENT_SHARE` of a core. Its CPU is measured (the loop's CPU clock over the
request's own stretches of work) and charged as a debt, paid back at that rate (the generic
cell rate algorithm): a client more than :data:`TOLERANCE_S` in debt waits before its next
search goes to ES, never longer than what is left of the search's deadline, and the wait
comes off it. A debt runs at most :data:`MAX_DEBT_S` ahead, so a burst that is over does
not hold a client back for long. A client alone, or on a loop that is not busy, is never
held back: what nobody else wants is its to use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sidecar.admission.ledger import MEAN_LIFE_S, ClientLedger, decay
from sidecar.deadline import Deadline

#: A client's share of one core while the loop is busy and others search.
CLIENT_SHARE = 0.1
#: Debt (seconds ahead of the share) a client may run up before it waits: bursts pass.
TOLERANCE_S = 1.0
#: Another client that did anything this recently is searching.
ACTIVE_S = 10.0
#: All clients' metered rerank-path CPU, in cores, above which the loop is busy: below it
#: no one is held back. What is metered is about half of a request's CPU (reading and
#: writing bodies, compression, the loop itself are not), so this is a loop about half busy.
CONTENDED = 0.25
#: A debt never runs further ahead than this (past the tolerance).
MAX_DEBT_S = 5.0


class LoopShare:
    def __init__(
        self,
        ledger: ClientLedger,
        cpu_clock: Callable[[], float],
        *,
        share: float = CLIENT_SHARE,
    ) -> None:
        self.ledger = ledger
        self.share = share
        self._cpu = cpu_clock
        #: All clients' CPU seconds, decayed, and when that was last brought up to date.
        self._total = (0.0, ledger.clock())

    def busy(self) -> float:
        """All clients' recent rerank-path CPU, in cores."""
        spent, at = self._total
        return spent * decay(self.ledger.clock() - at) / MEAN_LIFE_S

    def charge(self, client: str, cpu_s: float) -> None:
        """``client``'s request used ``cpu_s`` of the event loop's CPU."""
        when = self.ledger.clock()
        cpu_s = max(0.0, cpu_s)
        spent, at = self._total
        self._total = (spent * decay(when - at) + cpu_s, when)
        contended = self.ledger.others_seen_within(client, ACTIVE_S) and self.busy() >= CONTENDED
        entry = self.ledger.touch(client)
        if contended:
            ahead = when + TOLERANCE_S + MAX_DEBT_S
            entry.debt_until = min(max(entry.debt_until, when) + cpu_s / self.share, ahead)
        else:
            entry.debt_until = when  # alone, or nobody short of CPU: nothing is owed

    def owed(self, client: str) -> float:
        """Seconds ``client``'s next search waits before it goes to ES (0: none)."""
        entry = self.ledger.peek(client)
        if entry is None or not self.ledger.others_seen_within(client, ACTIVE_S):
            return 0.0
        return max(0.0, entry.debt_until - self.ledger.clock() - TOLERANCE_S)

    async def hold(self, client: str, deadline: Deadline) -> bool:
        """Wait while ``client`` owes CPU, at most what is left of ``deadline`` (the wait
        comes off it). True when it owed all of that: nothing is left to rerank with."""
        owed = self.owed(client)
        if owed <= 0:
            return False
        left = deadline.remaining()
        started = self.ledger.clock()
        # The debt is paid at a known rate: there is no signal to wait for.
        await asyncio.sleep(min(owed, left))
        # A busy loop wakes late: what was waited, not what was asked for, is the hold.
        deadline.held(self.ledger.clock() - started)
        return owed >= left

    @contextmanager
    def metered(self, client: str) -> Iterator[None]:
        """Charge ``client`` for the loop's CPU over this stretch of work (no await
        inside: another request's work would be charged too)."""
        start = self._cpu()
        try:
            yield
        finally:
            self.charge(client, self._cpu() - start)
