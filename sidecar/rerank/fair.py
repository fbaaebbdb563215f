"""Admission to the scorer, fair between clients: the lightest recent user goes first.

At most ``max_pairs`` pairs are with the scorer at once. Requests beyond that wait, and
the next one admitted is the oldest request of the waiting client that has used the model
least lately: pairs admitted, decayed with a half-life of :data:`USAGE_HALF_LIFE_S`.
Clients that use the model alike take turns (each admission adds to its client's use), and
a client sending a 300-search ``_msearch`` or a 1,000-document rerank goes after every
lighter client, so ordinary searches barely wait for it. The model is never idle while
anyone waits: a heavy client gets all that the others leave.

Each client may have ``max_waiting`` requests waiting; past that its new ones are shed at
once (Overloaded), and no other client's are.

A waiter that gives up (its deadline, or its client went away) leaves the queue: its
future says so, no flag repeats it.

Memory is bounded: a client's use is kept only while it is worth a pair, and for at most
:data:`MAX_CLIENTS` clients (the longest unseen is forgotten first).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sidecar.errors import Overloaded

#: How fast a client's past use of the model is forgotten.
USAGE_HALF_LIFE_S = 10.0
#: Clients whose use is remembered at once.
MAX_CLIENTS = 10_000


@dataclass(eq=False)
class Waiter:
    """A place in the queue; whether it is admitted (or gave up) is its future's state."""

    client: str
    pairs: int
    #: Arrival order: among clients of equal use, the oldest request goes first.
    seq: int
    admitted: asyncio.Future[None]
    #: Pairs with the scorer when it was admitted (ahead of it).
    ahead: int = 0


@dataclass(frozen=True)
class Waiting:
    """The gate as one client's new request would find it."""

    own_pairs: int
    own_usage: float
    #: (use, waiting pairs) of every other client with requests waiting.
    others: tuple[tuple[float, int], ...]


class FairGate:
    def __init__(
        self,
        max_pairs: int,
        max_waiting: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_pairs = max_pairs
        self.max_waiting = max_waiting
        self._clock = clock
        #: Pairs admitted and not yet released.
        self.in_flight = 0
        self._waiting: dict[str, deque[Waiter]] = {}
        #: Client -> (decayed pairs admitted, when last updated); oldest first.
        self._usage: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._seq = itertools.count()

    @property
    def waiting_pairs(self) -> int:
        return sum(w.pairs for q in self._waiting.values() for w in q if not w.admitted.done())

    @property
    def waiting_clients(self) -> int:
        return len(self._waiting)

    def usage(self, client: str) -> float:
        """``client``'s recent use of the model, in pairs (decayed)."""
        entry = self._usage.get(client)
        if entry is None:
            return 0.0
        pairs, at = entry
        return pairs * math.exp2(-(self._clock() - at) / USAGE_HALF_LIFE_S)

    def waiting(self, client: str) -> Waiting:
        own = 0
        others: list[tuple[float, int]] = []
        for name, queue in self._waiting.items():
            pairs = sum(w.pairs for w in queue if not w.admitted.done())
            if name == client:
                own = pairs
            elif pairs:
                others.append((self.usage(name), pairs))
        return Waiting(own, self.usage(client), tuple(others))

    def resize(self, max_pairs: int) -> None:
        """Change the capacity (the engine sizes it to what the model answers quickly)."""
        grew = max_pairs > self.max_pairs
        self.max_pairs = max_pairs
        if grew:
            self._dispatch()

    @asynccontextmanager
    async def admit(self, client: str, pairs: int) -> AsyncIterator[None]:
        """Hold ``pairs`` of the scorer's capacity for the body of the ``async with``."""
        waiter = self.enqueue(client, pairs)
        try:
            await waiter.admitted
            yield
        finally:
            self.leave(waiter)

    def enqueue(self, client: str, pairs: int) -> Waiter:
        """Take a place now (admitted at once when nothing waits and it fits); await
        ``admitted``, and call :meth:`leave` exactly once when done or giving up. Raises
        Overloaded when ``client`` has ``max_waiting`` requests waiting already."""
        future = asyncio.get_running_loop().create_future()
        waiter = Waiter(client, pairs, next(self._seq), future)
        if not self._waiting and self._fits(pairs):
            waiter.ahead = self._take(client, pairs)
            future.set_result(None)
            return waiter
        queue = self._waiting.get(client)
        if queue is not None and len(queue) >= self.max_waiting:
            raise Overloaded(f"more than {self.max_waiting} requests of one client waiting")
        if queue is None:
            queue = self._waiting[client] = deque()
        queue.append(waiter)
        self._dispatch()
        return waiter

    def leave(self, waiter: Waiter) -> None:
        """Give back an admitted waiter's capacity, or its place in the queue."""
        if waiter.admitted.done() and not waiter.admitted.cancelled():
            self.in_flight -= waiter.pairs
        else:
            waiter.admitted.cancel()
            self._forget(waiter)
        self._dispatch()

    def _forget(self, waiter: Waiter) -> None:
        queue = self._waiting.get(waiter.client)
        if queue is None:
            return
        if waiter in queue:
            queue.remove(waiter)
        if not queue:
            del self._waiting[waiter.client]

    def _fits(self, pairs: int) -> bool:
        # A request larger than the whole capacity is admitted alone: slow, never starved.
        return self.in_flight + pairs <= self.max_pairs or self.in_flight == 0

    def _take(self, client: str, pairs: int) -> int:
        """Admit ``pairs`` of ``client``; the pairs that were with the scorer before."""
        ahead = self.in_flight
        self.in_flight += pairs
        now = self._clock()
        self._usage[client] = (self.usage(client) + pairs, now)
        self._usage.move_to_end(client)
        while len(self._usage) > MAX_CLIENTS:
            self._usage.popitem(last=False)
        # Forget the long unseen whose use has faded below a pair.
        while self._usage:
            name, (used, at) = next(iter(self._usage.items()))
            if used * math.exp2(-(now - at) / USAGE_HALF_LIFE_S) >= 1.0:
                break
            del self._usage[name]
        return ahead

    def _dispatch(self) -> None:
        """Admit waiters, lightest client first, while they fit. A head that does not fit
        waits for capacity; nobody lighter is passed over for a smaller one."""
        while self._waiting:
            for name in list(self._waiting):
                queue = self._waiting[name]
                while queue and queue[0].admitted.done():
                    queue.popleft()  # gave up while waiting
                if not queue:
                    del self._waiting[name]
            if not self._waiting:
                return
            name = min(self._waiting, key=lambda c: (self.usage(c), self._waiting[c][0].seq))
            queue = self._waiting[name]
            head = queue[0]
            if not self._fits(head.pairs):
                return
            queue.popleft()
            if not queue:
                del self._waiting[name]
            head.ahead = self._take(name, head.pairs)
            head.admitted.set_result(None)
