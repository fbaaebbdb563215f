"""The model's queue, fair between clients and, within a client, between its requests.

At most ``max_pairs`` pairs are with the model at once. Requests beyond that wait in
parts. The next part admitted is chosen in two steps:

1. the client (an address) that has used the model least lately (its ``used`` in the
   :class:`~sidecar.admission.ledger.ClientLedger`; each admission adds to it): clients
   that use the model alike take turns, and a client sending a 300-search ``_msearch`` or a
   1,000-document rerank goes after every lighter client;
2. within that client, the request (a search, an ``_msearch`` with its sub-searches, a
   rerank-API call) that has had the fewest pairs admitted so far, its oldest part first:
   many users behind one address (a frontend server, a NAT) are served the same way, so one
   user's ``_msearch`` does not hold back the next user's search.

The model is never idle while anyone waits. One request may have
:data:`MAX_WAITING_PER_REQUEST` parts waiting and one client :data:`MAX_WAITING`; past
that, new parts are refused at once (Overloaded), nobody else's.

The queue predicts its own wait (:meth:`FairQueue.ahead_of`): the pairs with the model
that are still to be answered, and those it will admit before the last of a new request's
parts, by admitting them, on a copy, by the rule it admits with. Of the parts with the
model, the oldest is under way: what the model has answered of it since it was admitted
(``answered_since``, the meter's word) is not ahead of anyone. A search that arrives while
a heavy client's part is half done waits for the other half, not the whole.

A waiter that gives up (its deadline, or its client went away) leaves the queue: its
future says so, no flag repeats it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sidecar.admission.ledger import ClientLedger
from sidecar.errors import Overloaded

#: Parts one client may have waiting.
MAX_WAITING = 64
#: Parts one request may have waiting (an ``_msearch``'s sub-searches are one request).
MAX_WAITING_PER_REQUEST = 16


@dataclass(eq=False)
class Waiter:
    """A place in the queue; whether it is admitted (or gave up) is its future's state."""

    client: str
    request: str
    pairs: int
    #: Arrival order: among equals, the oldest part goes first.
    seq: int
    admitted: asyncio.Future[None]
    #: Pairs with the model when it was admitted (ahead of it).
    ahead: int = 0
    #: When it was admitted (the ledger's clock, which is the meter's: the monotonic one).
    admitted_at: float = math.nan

    @property
    def waiting(self) -> bool:
        return not self.admitted.done()


class FairQueue:
    def __init__(
        self,
        ledger: ClientLedger,
        max_pairs: int,
        *,
        max_waiting: int = MAX_WAITING,
        max_waiting_per_request: int = MAX_WAITING_PER_REQUEST,
        held_elsewhere: Callable[[], int] = lambda: 0,
        answered_since: Callable[[float], float] = lambda _: 0.0,
    ) -> None:
        self.ledger = ledger
        self.max_pairs = max_pairs
        self.max_waiting = max_waiting
        self.max_waiting_per_request = max_waiting_per_request
        #: Pairs the model holds that this queue did not admit (a worker's own queue).
        self._held_elsewhere = held_elsewhere
        #: Pairs the model has answered since a time (of the work it had then).
        self._answered_since = answered_since
        #: Admitted and not yet released, oldest first.
        self._admitted: dict[Waiter, None] = {}
        #: Client -> its waiting parts, oldest first.
        self._waiting: dict[str, list[Waiter]] = {}
        #: Request -> pairs admitted so far, while it has parts waiting.
        self._request_used: dict[str, int] = {}
        self._seq = itertools.count()

    @property
    def waiting_pairs(self) -> int:
        return sum(w.pairs for q in self._waiting.values() for w in q if w.waiting)

    def waiting(self, client: str) -> int:
        """Pairs of ``client`` waiting for admission."""
        return sum(w.pairs for w in self._waiting.get(client, ()) if w.waiting)

    @property
    def in_flight(self) -> int:
        """Pairs admitted and not yet released."""
        return sum(w.pairs for w in self._admitted)

    @property
    def with_model(self) -> int:
        """Pairs with the model now."""
        return max(self.in_flight, self._held_elsewhere())

    def still_with_model(self) -> float:
        """Pairs with the model that are still to be answered: the oldest part is under
        way, and what the model has answered of it is behind everyone."""
        oldest = next(iter(self._admitted), None)
        done = 0.0
        if oldest is not None:
            done = min(oldest.pairs, max(0.0, self._answered_since(oldest.admitted_at)))
        return max(self.in_flight - done, self._held_elsewhere())

    def ahead_of(
        self, client: str, request: str, pairs: int, part: int, *, progress: bool = True
    ) -> float:
        """Pairs that go to the model before the last of ``pairs`` new pairs of
        ``client``'s ``request`` (in parts of ``part``) is answered, them included (no new
        pairs: before the client's next turn): those with the model now, and those this
        queue will admit first. Worked out by admitting, on a copy of who waits with what
        use, by the rule :meth:`_next` admits with. ``progress=False``: all of what is with
        the model, answered or not."""
        step = max(1, part)
        mine = [min(step, pairs - j) for j in range(0, pairs, step)] or [0]
        plan = _Plan(self, client, request, mine)
        total = self.still_with_model() if progress else self.with_model
        while plan.mine_left:
            total += plan.admit_next()
        return total

    def parts(self) -> Iterable[tuple[str, list[Waiter]]]:
        """Each waiting client and its waiting parts."""
        return ((name, [w for w in q if w.waiting]) for name, q in self._waiting.items())

    def requests(self) -> dict[str, int]:
        """Pairs admitted so far of each request with parts waiting."""
        return dict(self._request_used)

    def resize(self, max_pairs: int) -> None:
        """Change how many pairs may be with the model at once."""
        grew = max_pairs > self.max_pairs
        self.max_pairs = max_pairs
        if grew:
            self._dispatch()

    @asynccontextmanager
    async def admit(self, client: str, request: str, pairs: int) -> AsyncIterator[Waiter]:
        """Hold ``pairs`` of the model's capacity for the body of the ``async with``."""
        waiter = self.enqueue(client, request, pairs)
        try:
            await waiter.admitted
            yield waiter
        finally:
            self.leave(waiter)

    def enqueue(self, client: str, request: str, pairs: int) -> Waiter:
        """Take a place now (admitted at once when nothing waits and it fits); await
        ``admitted``, and call :meth:`leave` exactly once when done or giving up. Raises
        Overloaded when the client, or the request, has all the parts waiting it may."""
        future = asyncio.get_running_loop().create_future()
        waiter = Waiter(client, request, pairs, next(self._seq), future)
        if not self._waiting and self._fits(pairs):
            self._take(waiter)
            return waiter
        queue = self._waiting.get(client, [])
        if len(queue) >= self.max_waiting:
            raise Overloaded(f"{self.max_waiting} parts of one client waiting already")
        if sum(w.request == request for w in queue) >= self.max_waiting_per_request:
            raise Overloaded(f"{self.max_waiting_per_request} parts of one request waiting")
        self._waiting.setdefault(client, []).append(waiter)
        self._request_used.setdefault(request, 0)
        self._dispatch()
        return waiter

    def leave(self, waiter: Waiter) -> None:
        """Give back an admitted waiter's capacity, or its place in the queue."""
        if waiter.admitted.done() and not waiter.admitted.cancelled():
            self._admitted.pop(waiter, None)
        else:
            waiter.admitted.cancel()
            self._remove(waiter)
        self._dispatch()

    def _fits(self, pairs: int) -> bool:
        # A request larger than the whole capacity is admitted alone: slow, never starved.
        return self.in_flight + pairs <= self.max_pairs or self.in_flight == 0

    def _take(self, waiter: Waiter) -> None:
        waiter.ahead = self.in_flight
        waiter.admitted_at = self.ledger.clock()
        self._admitted[waiter] = None
        self.ledger.touch(waiter.client).used += waiter.pairs
        if waiter.request in self._request_used:
            self._request_used[waiter.request] += waiter.pairs
        waiter.admitted.set_result(None)

    def _remove(self, waiter: Waiter) -> None:
        """Take ``waiter`` out of its client's parts (admitted, or gone); forget the client
        and the request once they have none waiting."""
        queue = self._waiting.get(waiter.client, [])
        if waiter in queue:
            queue.remove(waiter)
        if not queue:
            self._waiting.pop(waiter.client, None)
        if not any(w.request == waiter.request for w in queue):
            self._request_used.pop(waiter.request, None)

    def head(self, client: str) -> Waiter:
        """The client's next part: of its request with the fewest pairs admitted, the
        oldest."""
        return min(self._waiting[client], key=lambda w: (self._request_used[w.request], w.seq))

    def _next(self) -> Waiter | None:
        """The next part to admit: the lightest client's head; among clients of equal
        use, the one whose head is oldest."""
        for gone in [w for q in self._waiting.values() for w in q if not w.waiting]:
            self._remove(gone)  # gave up while waiting; its leave() is still to come
        if not self._waiting:
            return None
        heads = (self.head(client) for client in self._waiting)
        return min(heads, key=lambda w: (self.ledger.used(w.client), w.seq))

    def _dispatch(self) -> None:
        """Admit waiters while they fit. A head that does not fit waits for capacity;
        nobody lighter is passed over for a smaller one."""
        while (head := self._next()) is not None and self._fits(head.pairs):
            self._take(head)
            self._remove(head)


class _Plan:
    """A copy of who waits with what use, admitted in the queue's order (for a
    prediction): until a new request's last part of ``mine`` is admitted."""

    def __init__(self, queue: FairQueue, client: str, request: str, mine: Iterable[int]) -> None:
        self._parts: dict[str, list[tuple[str, float, int]]] = {
            name: [(w.request, w.seq, w.pairs) for w in q] for name, q in queue.parts()
        }
        self._used = {name: queue.ledger.used(name) for name in self._parts}
        self._used.setdefault(client, queue.ledger.used(client))
        self._request_used = queue.requests()
        self._request_used.setdefault(request, 0)
        # The new parts come after every part waiting now (their order: inf).
        self._parts.setdefault(client, []).extend((request, math.inf, p) for p in mine)
        self._client = client

    @property
    def mine_left(self) -> bool:
        return any(seq == math.inf for _, seq, _ in self._parts[self._client])

    def admit_next(self) -> int:
        def head(name: str) -> tuple[str, float, int]:
            return min(self._parts[name], key=lambda p: (self._request_used[p[0]], p[1]))

        heads = [(name, head(name)) for name, parts in self._parts.items() if parts]
        name, part = min(heads, key=lambda h: (self._used[h[0]], h[1][1]))
        self._parts[name].remove(part)
        request, _, pairs = part
        self._used[name] += pairs
        self._request_used[request] += pairs
        return pairs
