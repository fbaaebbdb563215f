"""A small closed-loop HTTP load generator (aiohttp), used by the benchmark suite.

``concurrency`` workers each send one request at a time, back to back, for ``requests``
requests in total; latency is measured per request on the client side. Run it in a process of
its own so that it does not share an event loop (or a core) with the server under test.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp


@dataclass
class LoadResult:
    label: str
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    headers_seen: dict[str, int] = field(default_factory=dict)

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_s)
        if not data:
            return float("nan")
        k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
        return data[k]

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.latencies_s) if self.latencies_s else float("nan")

    def merge(self, other: LoadResult) -> None:
        self.latencies_s += other.latencies_s
        self.wall_s += other.wall_s
        self.errors += other.errors
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        for header, n in other.headers_seen.items():
            self.headers_seen[header] = self.headers_seen.get(header, 0) + n


async def run_load(
    label: str,
    url: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    requests: int,
    header: str | None = None,
    method: str = "POST",
) -> LoadResult:
    """Send ``requests`` requests over ``concurrency`` connections (bodies round-robin)."""
    result = LoadResult(label)
    counter = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in counter:
                body = bodies[i % len(bodies)]
                t0 = time.perf_counter()
                try:
                    async with session.request(method, url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                        seen = resp.headers.get(header, "") if header else ""
                except aiohttp.ClientError:
                    result.errors += 1
                    continue
                result.latencies_s.append(time.perf_counter() - t0)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if seen:
                    key = seen.split(";")[0]
                    result.headers_seen[key] = result.headers_seen.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - t0
    return result


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"
