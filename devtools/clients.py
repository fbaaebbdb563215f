"""Closed-loop HTTP clients for load tests, and the checks every search response must pass.

Used by the soak (``devtools.soak``) and the reliability suite: ``concurrency`` clients each
send one request at a time, chosen by a ``pick`` function, until a wall-clock deadline or a
request budget is spent; every result is kept in a :class:`Tally`.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

FALLBACK_REASONS = frozenset({"timeout", "breaker_open", "overloaded", "error", "budget"})
RERANK_STATUSES = frozenset({"applied", "cached", "shadow", "skipped", "fallback"})

_METRIC = re.compile(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$")


def parse_metrics(text: str) -> dict[str, float]:
    """``name{labels} value`` lines of a Prometheus text page into ``{"name{labels}": v}``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def rerank_header(value: str | None) -> tuple[str, str | None]:
    """``status; reason=r`` -> (status, r); ``applied; window=K`` (only the top K fitted the
    budget) -> ("applied", None); anything else unparsable -> a status no check accepts."""
    status, _, rest = (value or "").partition("; ")
    key, _, arg = rest.partition("=")
    if key == "window":
        return (status, None) if arg.isdigit() and int(arg) > 0 else ("?", None)
    if rest and key != "reason":
        return "?", None
    return status, arg or None


def check_search_response(
    status: int, headers: Mapping[str, str], body: bytes, *, msearch: bool
) -> str | None:
    """Why a search response is not acceptable, or None. Acceptable: 200, valid ES JSON, an
    X-Rerank header in the documented vocabulary that agrees with the body's ``_rerank``."""
    if status != 200:
        return f"status {status}"
    try:
        data = json.loads(body)
    except ValueError:
        return "invalid JSON"
    if not isinstance(data, dict):
        return "not a JSON object"
    if msearch:
        if not isinstance(data.get("responses"), list):
            return "no responses array"
    elif not isinstance(data.get("hits"), dict):
        return "no hits object"
    rstatus, reason = rerank_header(headers.get("X-Rerank"))
    if rstatus not in RERANK_STATUSES:
        return f"bad X-Rerank {headers.get('X-Rerank')!r}"
    if rstatus == "fallback" and reason not in FALLBACK_REASONS:
        return f"undocumented fallback reason {reason!r}"
    annotation = data.get("_rerank")
    if (
        not msearch
        and isinstance(annotation, dict)
        and (annotation.get("status") != rstatus or annotation.get("reason") != reason)
    ):
        return f"X-Rerank {headers.get('X-Rerank')!r} disagrees with _rerank {annotation}"
    return None


@dataclass
class Result:
    kind: str
    status: int
    latency_s: float
    outcome: str = ""
    problem: str | None = None
    #: An error that is the documented answer to what was sent (a 4xx for a bad request,
    #: a 503 from /_sidecar/v1/rerank while the model is faulty).
    explained: str | None = None


@dataclass
class Tally:
    results: list[Result] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float = 0.0
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list, repr=False)

    def add(self, result: Result) -> None:
        self.results.append(result)
        done = len(self.results)
        for n, fut in self._waiters:
            if n <= done and not fut.done():
                fut.set_result(None)

    async def reached(self, n: int) -> None:
        """Return once ``n`` results are in."""
        if len(self.results) >= n:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        try:
            await fut
        finally:
            self._waiters.remove((n, fut))

    @property
    def wall_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def unexplained(self) -> Counter[str]:
        return Counter(f"{r.kind}: {r.problem}" for r in self.results if r.problem)

    def explained(self) -> Counter[str]:
        return Counter(f"{r.kind}: {r.explained}" for r in self.results if r.explained)

    def by_kind(self) -> Counter[str]:
        return Counter(r.kind for r in self.results)

    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results if r.outcome)

    def percentile(self, q: float, kind: str | None = None) -> float:
        data = sorted(r.latency_s for r in self.results if kind is None or r.kind == kind)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))]


class Pacer:
    """Spreads requests of all workers to at most ``rate`` per second."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_t = time.monotonic()

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        self.next_t = max(self.next_t + self.interval, now)
        delay = self.next_t - now
        if delay > 0:
            await asyncio.sleep(delay)


#: One request: ``(session, base_url) -> Result``. A ``kind`` attribute names it in the
#: tally when it raises.
Request = Callable[[aiohttp.ClientSession, str], Awaitable[Result]]


class _Budget:
    """Hands out request tickets until the deadline passes or the count is spent."""

    def __init__(
        self, duration_s: float | None, requests: int | None, stop: asyncio.Event | None = None
    ) -> None:
        if duration_s is None and requests is None and stop is None:
            raise ValueError("bound the load by duration_s, requests or a stop event")
        self.deadline = time.monotonic() + duration_s if duration_s is not None else None
        self.left = requests
        self.stop = stop

    def take(self) -> bool:
        if self.stop is not None and self.stop.is_set():
            return False
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        if self.left is not None:
            if self.left <= 0:
                return False
            self.left -= 1
        return True


async def run_clients(
    base_url: str,
    pick: Callable[[random.Random], Request],
    *,
    concurrency: int,
    duration_s: float | None = None,
    requests: int | None = None,
    rate: float = 0.0,
    seed: int = 7,
    tally: Tally | None = None,
    request_timeout_s: float = 30.0,
    stop: asyncio.Event | None = None,
) -> Tally:
    """``concurrency`` closed-loop clients until ``duration_s`` has passed, ``requests``
    requests were sent or ``stop`` is set, whichever comes first (what is in flight then
    is answered and counted)."""
    tally = tally or Tally()
    pacer = Pacer(rate)
    budget = _Budget(duration_s, requests, stop)
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def worker(n: int) -> None:
            rng = random.Random(seed * 1000 + n)
            while True:
                await pacer.wait()
                if not budget.take():
                    return
                request = pick(rng)
                t0 = time.perf_counter()
                try:
                    result = await request(session, base_url)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    name = getattr(request, "kind", "request")
                    result = Result(
                        name, 0, time.perf_counter() - t0, problem=f"client {type(exc).__name__}"
                    )
                tally.add(result)

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    tally.ended = time.monotonic()
    return tally
