"""Contenders of a scenario, measured in interleaved rounds, and their latency table.

Each round runs every contender in turn, so drift on the machine (other processes, thermal
limits) hits all of them alike and the ratios between them stay meaningful. Besides client
latency, each contender is charged the load generator's own CPU time and the CPU time of the
server process that answered it, so a reader can tell which process set the figures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from devtools.bench.loadgen import LoadResult, run_load
from devtools.procfs import cpu_seconds, own_cpu_seconds


@dataclass
class LoadTarget:
    label: str
    url: str
    #: round number -> request bodies for that round (fresh queries defeat caches).
    bodies: Callable[[int], list[bytes]]
    concurrency: int
    per_round: int
    #: The server process whose CPU time is charged to this contender.
    pid: int | None = None
    result: LoadResult = field(default_factory=lambda: LoadResult(""))
    generator_cpu_s: float = 0.0
    server_cpu_s: float | None = 0.0
    round_walls: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.result.label = self.label

    @property
    def requests(self) -> int:
        return len(self.result.latencies_s)

    @property
    def generator_us(self) -> float:
        return self.generator_cpu_s / max(1, self.requests) * 1e6

    @property
    def generator_share(self) -> float:
        return self.generator_cpu_s / self.result.wall_s if self.result.wall_s else 0.0

    @property
    def server_us(self) -> float | None:
        if self.server_cpu_s is None:
            return None
        return self.server_cpu_s / max(1, self.requests) * 1e6

    @property
    def server_share(self) -> float | None:
        """Cores the server process kept busy during this contender's rounds."""
        if self.server_cpu_s is None or not self.result.wall_s:
            return None
        return self.server_cpu_s / self.result.wall_s


async def interleaved(targets: list[LoadTarget], rounds: int, warm: int = 100) -> None:
    """Warm every contender, then ``rounds`` rounds of each in turn."""
    for t in targets:
        if warm:
            await run_load(
                "warm",
                t.url,
                t.bodies(-1),
                concurrency=t.concurrency,
                requests=min(warm, max(t.per_round, 1)),
            )
    for r in range(rounds):
        for t in targets:
            await measured_round(t, r)


async def measured_round(
    t: LoadTarget, r: int, settle: Callable[[], Awaitable[None]] | None = None
) -> LoadResult:
    """Round ``r`` of one contender, its CPU (generator's and server's) and wall time added
    to its figures. ``settle``, awaited before the closing CPU reading, charges work the
    round left behind (a log still being written) to that round."""
    cpu0, srv0 = own_cpu_seconds(), cpu_seconds(t.pid)
    res = await run_load(
        t.label,
        t.url,
        t.bodies(r),
        concurrency=t.concurrency,
        requests=t.per_round,
        header="X-Rerank",
    )
    if settle is not None:
        await settle()
    cpu1, srv1 = own_cpu_seconds(), cpu_seconds(t.pid)
    t.generator_cpu_s += cpu1 - cpu0
    if srv0 is None or srv1 is None or t.server_cpu_s is None:
        t.server_cpu_s = None
    else:
        t.server_cpu_s += srv1 - srv0
    t.round_walls.append(res.wall_s)
    t.result.merge(res)
    return res


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def latency_table(targets: list[LoadTarget], baseline: int = 0) -> str:
    base = targets[baseline].result
    lines = [
        "| path | c | requests | errors | p50 ms | p95 ms | p99 ms | req/s | p50 × base | "
        "added p50 ms | added p99 ms | X-Rerank | generator CPU µs/req (core share) | "
        "server CPU µs/req |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(targets):
        r = t.result
        if i == baseline:
            ratio = added50 = added99 = "—"
        else:
            ratio = f"{r.pct(50) / base.pct(50):.2f}×" if base.pct(50) else "n/a"
            added50 = f"{(r.pct(50) - base.pct(50)) * 1000:+.2f}"
            added99 = f"{(r.pct(99) - base.pct(99)) * 1000:+.2f}"
        seen = ", ".join(f"{k} {v}" for k, v in sorted(r.headers_seen.items())) or "—"
        bad = {k: v for k, v in r.statuses.items() if k != 200}
        if bad:
            seen += f"; non-200 {bad}"
        server = f"{t.server_us:.0f}" if t.server_us is not None else "n/a"
        lines.append(
            f"| {t.label} | {t.concurrency} | {t.requests} | {r.errors} | {ms(r.pct(50))} | "
            f"{ms(r.pct(95))} | {ms(r.pct(99))} | {r.throughput:.0f} | {ratio} | {added50} | "
            f"{added99} | {seen} | {t.generator_us:.0f} ({t.generator_share:.0%}) | {server} |"
        )
    return "\n".join(lines)
