"""Each client's share of a connection pool to ES.

A pooled connection is held for as long as its answer takes to reach the client: a client
that asks for large answers and reads them slowly (or never) holds its connections until
the transfer-rate limit cuts it off. Four such requests from one address could hold a pool
of four, and every other client's request would wait for a connection. So one client (an
address behind trusted proxies, as for the model) holds at most :data:`CLIENT_SHARE` of
each pool, at least one connection; its further requests wait for one of its own to come
back, never for anyone else's. A client is kept only while it has requests on the pool or
waiting for it (bounded by the pool's size and the requests in flight).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sidecar.errors import UpstreamTimeout

#: The most of a pool one client holds.
CLIENT_SHARE = 0.5


@dataclass
class _Client:
    held: int = 0
    waiting: int = 0
    freed: asyncio.Condition = field(default_factory=asyncio.Condition)


class PoolShare:
    def __init__(self, size: int, *, share: float = CLIENT_SHARE) -> None:
        self.cap = max(1, math.floor(size * share))
        self._clients: dict[str, _Client] = {}

    def held(self, client: str) -> int:
        entry = self._clients.get(client)
        return 0 if entry is None else entry.held

    @asynccontextmanager
    async def hold(self, client: str, wait_s: float) -> AsyncIterator[None]:
        """Hold one of ``client``'s places on the pool for the ``async with``; wait at
        most ``wait_s`` for one of its own to come back (then 504, as for a pool that gives
        no connection in time)."""
        entry = self._clients.setdefault(client, _Client())
        if entry.held >= self.cap:
            entry.waiting += 1
            try:
                async with asyncio.timeout(wait_s), entry.freed:
                    await entry.freed.wait_for(lambda: entry.held < self.cap)
            except TimeoutError as exc:
                raise UpstreamTimeout(
                    "no connection to Elasticsearch came free in time for this client"
                ) from exc
            finally:
                entry.waiting -= 1
                self._drop_if_idle(client, entry)
        entry.held += 1
        self._clients[client] = entry
        try:
            yield
        finally:
            entry.held -= 1
            if entry.waiting:
                async with entry.freed:
                    entry.freed.notify()
            self._drop_if_idle(client, entry)

    def _drop_if_idle(self, client: str, entry: _Client) -> None:
        if not entry.held and not entry.waiting and self._clients.get(client) is entry:
            del self._clients[client]

    def __len__(self) -> int:
        return len(self._clients)
