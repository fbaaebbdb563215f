"""Admission to the scorer, fair between clients.

At most ``max_pairs`` pairs are with the scorer at once. Requests beyond that wait, and are
admitted round-robin across clients (deficit round robin, by pairs): a client sending a
300-search ``_msearch`` or a 1,000-document rerank waits behind its own work, not in front
of everyone else's. Each client may have ``max_waiting`` requests waiting; past that its
new ones are shed at once (Overloaded), and no other client's are.

A waiter that gives up (its deadline, or its client went away) leaves the queue: its
future says so, no flag repeats it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sidecar.errors import Overloaded


@dataclass
class _Waiter:
    pairs: int
    admitted: asyncio.Future[None]


@dataclass
class _Client:
    waiting: deque[_Waiter] = field(default_factory=deque)
    deficit: int = 0


class FairGate:
    def __init__(self, max_pairs: int, max_waiting: int, quantum: int) -> None:
        self.max_pairs = max_pairs
        self.max_waiting = max_waiting
        self.quantum = quantum
        #: Pairs admitted and not yet released.
        self.in_flight = 0
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    @property
    def waiting_pairs(self) -> int:
        return sum(w.pairs for c in self._clients.values() for w in c.waiting)

    @property
    def waiting_clients(self) -> int:
        return len(self._clients)

    def waiting(self, client: str) -> tuple[int, tuple[int, ...]]:
        """Pairs waiting: ``client``'s own, and each other client's."""
        own, others = 0, []
        for name, entry in self._clients.items():
            pairs = sum(w.pairs for w in entry.waiting if not w.admitted.done())
            if name == client:
                own = pairs
            elif pairs:
                others.append(pairs)
        return own, tuple(others)

    def resize(self, max_pairs: int) -> None:
        """Change the capacity (the engine sizes it to what the model answers quickly)."""
        grew = max_pairs > self.max_pairs
        self.max_pairs = max_pairs
        if grew:
            self._dispatch()

    @asynccontextmanager
    async def admit(self, client: str, pairs: int) -> AsyncIterator[None]:
        """Hold ``pairs`` of the scorer's capacity for the body of the ``async with``."""
        if self.in_flight + pairs > self.max_pairs or self._clients:
            await self._wait(client, pairs)
        else:
            self.in_flight += pairs
        try:
            yield
        finally:
            self.in_flight -= pairs
            self._dispatch()

    async def _wait(self, client: str, pairs: int) -> None:
        entry = self._clients.get(client)
        if entry is None:
            entry = self._clients[client] = _Client()
        if len(entry.waiting) >= self.max_waiting:
            if not entry.waiting:
                del self._clients[client]
            raise Overloaded(f"more than {self.max_waiting} requests of one client waiting")
        waiter = _Waiter(pairs, asyncio.get_running_loop().create_future())
        entry.waiting.append(waiter)
        self._dispatch()
        try:
            await waiter.admitted
        except BaseException:
            if waiter.admitted.done() and not waiter.admitted.cancelled():
                # Admitted just as it gave up: hand the capacity back.
                self.in_flight -= pairs
            else:
                self._forget(client, waiter)
            self._dispatch()
            raise

    def _forget(self, client: str, waiter: _Waiter) -> None:
        entry = self._clients.get(client)
        if entry is None:
            return
        if waiter in entry.waiting:
            entry.waiting.remove(waiter)
        if not entry.waiting:
            del self._clients[client]

    def _fits(self, pairs: int) -> bool:
        # A request larger than the whole capacity is admitted alone: slow, never starved.
        return self.in_flight + pairs <= self.max_pairs or self.in_flight == 0

    def _dispatch(self) -> None:
        """Admit waiters round-robin while capacity lasts: each turn a client with a head
        that fits gets ``quantum`` pairs of credit and spends it on its oldest requests."""
        progressed = True
        while progressed and self._clients:
            progressed = False
            for name in list(self._clients):
                entry = self._clients[name]
                while entry.waiting and entry.waiting[0].admitted.done():
                    entry.waiting.popleft()  # gave up while waiting
                if entry.waiting and self._fits(entry.waiting[0].pairs):
                    entry.deficit += self.quantum
                served = False
                while entry.waiting:
                    head = entry.waiting[0]
                    if head.pairs > entry.deficit or not self._fits(head.pairs):
                        break
                    entry.waiting.popleft()
                    entry.deficit -= head.pairs
                    self.in_flight += head.pairs
                    head.admitted.set_result(None)
                    served = progressed = True
                if not entry.waiting:
                    del self._clients[name]
                elif served:
                    # Round robin: a client that was served goes to the back of the line.
                    self._clients.move_to_end(name)
            if not progressed and self._clients:
                # Credit still short of a head that fits: another round adds to it.
                progressed = any(
                    c.waiting and self._fits(c.waiting[0].pairs) for c in self._clients.values()
                )
