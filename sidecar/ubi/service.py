"""The UBI service: the query log, events, the report, retention and the guard, in one
object the application owns (``ubi.enabled``).

* Events (:meth:`UbiService.accept`): a request is validated whole (any bad event: nothing
  of it is stored) and queued for ``ubi.events_index``; each client (address) sends at most
  ``ubi.events.per_client_per_s`` requests a second, in bursts of five seconds' worth.
* The report (:meth:`UbiService.report`) reads both indices: every replica's log.
* Retention: once an hour, entries older than ``ubi.retention_days`` are deleted.
* The guard: every ``ubi.guard.interval_s``, the interleaving since the rules were last
  loaded; when ES's own order wins significantly, the rollout is tripped
  (:meth:`Rollout.trip`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sidecar.config import UbiConfig
from sidecar.deadline import now
from sidecar.errors import BadRequest, RequestTooLarge, ServiceUnavailable, SidecarError
from sidecar.jsonutil import dumps
from sidecar.rerank.identity import IdentityRule
from sidecar.rerank.rollout import Rollout
from sidecar.ubi import reader
from sidecar.ubi.log import UbiLog
from sidecar.ubi.report import Tally, summary
from sidecar.ubi.schema import EventError, events_of, utc, validate
from sidecar.ubi.search import UbiSearch

log = logging.getLogger("sidecar.ubi")

RETENTION_EVERY_S = 3600.0
#: Clients whose event rate is remembered at once.
MAX_CLIENTS = 10_000
BURST_S = 5.0

Send = Callable[[str, str, bytes | None, str], Awaitable[tuple[int, bytes]]]


class TooManyRequests(SidecarError):
    status = 429
    error_type = "too_many_requests_exception"


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """A token bucket per client: ``rate`` a second, ``rate * BURST_S`` (one at least) at
    once; the clients remembered are bounded."""

    def __init__(self, rate: float, clock: Callable[[], float] = now) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str) -> bool:
        when = self.clock()
        full = max(1.0, self.rate * BURST_S)  # a slow rate still lets one request through
        bucket = self._buckets.pop(client, None) or _Bucket(full, when)
        bucket.tokens = min(full, bucket.tokens + (when - bucket.at) * self.rate)
        bucket.at = when
        self._buckets[client] = bucket
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True


class UbiService:
    def __init__(
        self,
        config: UbiConfig,
        send: Send,
        rollout: Rollout,
        identity: IdentityRule,
        *,
        max_bytes: int,
    ) -> None:
        self.config = config
        self._send = send
        self._rollout = rollout
        self.log = UbiLog(send, max_bytes=max_bytes)
        self.log.index_for(config.events_index, events=True)
        self.log.index_for(config.queries_index, events=False)
        self.search = UbiSearch(config, self.log, identity)
        self.rate = RateLimit(config.events.per_client_per_s)
        self.guard_trips = 0
        #: Checks of the guard done (whatever they found); notified after each.
        self.guard_checks = 0
        self._checked = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.log.start()
        if self.config.retention_days is not None:
            self._tasks.append(asyncio.create_task(self._every(RETENTION_EVERY_S, self.retain)))
        if self.config.guard.enabled:
            interval = self.config.guard.interval_s
            self._tasks.append(asyncio.create_task(self._every(interval, self.check_guard)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.log.close()

    # --- events ---------------------------------------------------------------------------

    def accept(self, client: str, raw: bytes, content_type: str) -> int:
        """Validate a request's events, all of them, and queue them; how many. Raises an
        ES-shaped error (400, 413, 429, 503) and stores nothing otherwise."""
        events = self.config.events
        if len(raw) > events.max_body_bytes:
            raise RequestTooLarge(f"request body is larger than {events.max_body_bytes} bytes")
        if not self.rate.take(client):
            raise TooManyRequests(
                f"more than {events.per_client_per_s:g} event requests a second from this client"
            )
        try:
            parsed = events_of(raw, content_type)
            if len(parsed) > events.max_events:
                raise EventError(events.max_events, "events", f"more than {events.max_events}")
            documents = [validate(i, event).document for i, event in enumerate(parsed)]
        except EventError as exc:
            raise BadRequest(str(exc)) from exc
        for document in documents:
            # An event's query text is kept, hashed or dropped as the query log's is.
            if isinstance(document.get("user_query"), str):
                text = self.search.query_text(document["user_query"])
                if text is None:
                    del document["user_query"]
                else:
                    document["user_query"] = text
        lines = [dumps(d) for d in documents]
        if self.log.queued_bytes + sum(map(len, lines)) > self.log.max_bytes:
            raise ServiceUnavailable("the event queue is full; send the events again later")
        for document in documents:
            self.log.add(self.config.events_index, document)
        return len(documents)

    # --- the report -----------------------------------------------------------------------

    async def report(
        self, since: str | None, until: str | None, alpha: float = 0.05
    ) -> dict[str, Any]:
        """The report over a period (every replica's log): see :mod:`sidecar.ubi.report`."""
        bounds = reader.period(since, until)
        clicks = await reader.clicks(self._send, self.config.events_index, bounds)
        tally, seen = Tally(), set()
        async for served in reader.queries(self._send, self.config.queries_index, bounds):
            tally.add(served, clicks.get(served.query_id, ()))
            seen.add(served.query_id)
        unknown = sum(len(c) for q, c in clicks.items() if q not in seen)
        figures = summary(tally, unknown, alpha)
        figures["period"] = {"since": since, "until": until}
        return figures

    # --- background work ------------------------------------------------------------------

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)  # a schedule: there is nothing else to wait for
            try:
                await work()
            except Exception:
                log.exception("UBI: background work failed; tried again in %.0f s", seconds)

    async def retain(self) -> None:
        """Delete entries older than ``retention_days`` from both indices."""
        days = self.config.retention_days
        if days is None:
            return
        body = dumps({"query": {"range": {"timestamp": {"lt": f"now-{days}d"}}}})
        for index in (self.config.queries_index, self.config.events_index):
            path = f"/{index}/_delete_by_query?conflicts=proceed&ignore_unavailable=true"
            status, _ = await self._send("POST", path, body, "application/json")
            if status not in (200, 404):
                log.warning("UBI: deleting old entries of %s answered %d", index, status)

    async def check_guard(self) -> None:
        """Trip the rollout when the interleaving since the rules were loaded shows ES's
        own order significantly better."""
        if self._rollout.tripped is None:
            guard = self.config.guard
            figures = await self.report(utc(self._rollout.loaded_at), None, guard.alpha)
            inter = figures["interleaving"]
            decisive = inter["rerank_wins"] + inter["es_wins"]
            es_better = inter["es_wins"] > inter["rerank_wins"] and inter["p_value"] < guard.alpha
            if decisive >= guard.min_decisive_queries and es_better:
                self.guard_trips += 1
                self._rollout.trip(inter["verdict"])
        async with self._checked:
            self.guard_checks += 1
            self._checked.notify_all()

    async def guard_checked(self, checks: int) -> None:
        """Until the guard has checked ``checks`` times since the start."""
        async with self._checked:
            await self._checked.wait_for(lambda: self.guard_checks >= checks)

    def state(self) -> dict[str, Any]:
        """For ``/_sidecar/ready``: the log's queue, writes and drops."""
        return {
            **self.log.state(),
            "guard_checks": self.guard_checks,
            "guard_trips": self.guard_trips,
        }
