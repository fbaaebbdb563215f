"""The benchmark suite: every scenario with its baseline beside it, in one run.

    python -m es_integration bench [--quick] [--only 1 3 5] [--write-docs [PATH]]

Scenarios (each runs its contenders in interleaved rounds, so drift on a shared machine hits
them alike, and prints p50/p95/p99 latency, throughput and the ratio to the baseline):

1. pass-through overhead: ES directly vs through the sidecar with reranking rolled out to
   nobody (stub ES, so the sidecar's own cost is what differs; bench_proxy's stub and bodies),
   at concurrency 16 and at concurrency 1;
2. score cache: rerank with a cold cache (a new query every request) vs a hot cache (scores
   cached, ES still asked) vs ES directly;
3. a model that hangs (remote backend pointed at a fault server in its own process): the
   model stage gives up at the budget; the breaker open vs plain pass-through;
4. cross-request batching through a sidecar: 16 concurrent searches of 20 hits vs the same
   searches one by one (a MiniLM-L6-sized cross-encoder with random weights);
5. model-stage efficiency: pairs/s of the serving stack vs a bare forward loop vs this
   machine's matmul throughput, measured in the same run, for fp32 and for
   ``model.cpu_quantization: dynamic_int8`` (bench_models' model, workload and yardstick).

The load generator is this process (aiohttp on one event loop, ``es_integration.loadgen``);
ES stand-ins, fault server and sidecars are processes of their own. That the generator is
not the bottleneck is checked, not assumed: its own CPU time per request and its share of a
core are reported per contender, beside the server's CPU time per request (from /proc), and
the direct-to-stub throughput is the ceiling of generator + upstream in the same run.

``--write-docs`` rewrites the benchmark section of docs/benchmarks.md with the tables, the
date, the machine and the load average before and after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_integration import bench_proxy
from es_integration.eval_report import load_average, machine_description, now_text
from es_integration.eval_report import replace_section as _replace_section
from es_integration.loadgen import LoadResult, run_load
from es_integration.local_es import free_port, wait_ready
from es_integration.sidecar_proc import SidecarProcess

BUNDLED_MODEL = bench_proxy.BENCH_MODEL
DOCS_PATH = Path("docs/benchmarks.md")

# Goals, as the product states them.
PASS_P50_MS, PASS_P99_MS = 0.5, 2.0
HOT_ADDED_MS = 1.0
BUDGET_MS = 100.0
BUDGET_SLACK_MS = 10.0
BREAKER_P50_MS = 0.5
BATCHING_RATIO = 1.8
EFFICIENCY = 0.80
INT8_SPEEDUP = 2.0


# --- measuring -----------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
            bodies = t.bodies(r)
            cpu0, srv0 = own_cpu_seconds(), cpu_seconds(t.pid)
            res = await run_load(
                t.label,
                t.url,
                bodies,
                concurrency=t.concurrency,
                requests=t.per_round,
                header="X-Rerank",
            )
            cpu1, srv1 = own_cpu_seconds(), cpu_seconds(t.pid)
            t.generator_cpu_s += cpu1 - cpu0
            if srv0 is None or srv1 is None or t.server_cpu_s is None:
                t.server_cpu_s = None
            else:
                t.server_cpu_s += srv1 - srv0
            t.round_walls.append(res.wall_s)
            t.result.merge(res)


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


# --- results -------------------------------------------------------------------------------


@dataclass
class Goal:
    scenario: str
    goal: str
    measured: str
    met: bool | None
    why: str = ""

    @property
    def verdict(self) -> str:
        return "n/a" if self.met is None else "met" if self.met else "**missed**"


@dataclass
class Section:
    number: int
    title: str
    body: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    seconds: float = 0.0

    def markdown(self) -> str:
        return "\n".join([f"### {self.number}. {self.title}", "", *self.body, ""])


@dataclass
class Bench:
    quick: bool
    work: Path
    stack: contextlib.ExitStack
    sections: list[Section] = field(default_factory=list)

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def start_server(self, name: str, *args: str) -> tuple[str, int]:
        """A process of ``es_integration.bench_servers``; (url, pid)."""
        port = free_port()
        cmd = [sys.executable, "-m", "es_integration.bench_servers", *args, "--port", str(port)]
        with (self.work / f"{name}-{port}.log").open("wb") as log:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

        self.stack.callback(stop)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 30, proc)
        return url, proc.pid

    def sidecar(
        self, name: str, es_url: str, model: str, env: dict[str, str], timeout: float = 300
    ) -> SidecarProcess:
        full_env = {"RERANK_SIDECAR__SERVER__ACCESS_LOG": "false", **env}
        sc = SidecarProcess.start(
            es_url,
            log_path=self.work / f"sidecar-{name}.log",
            model=model,
            env=full_env,
            wait_ready=True,
            timeout=timeout,
        )
        self.stack.callback(sc.stop)
        return sc


def _search_body(query: str, *, window: int | None = None, size: int = 10) -> bytes:
    body: dict[str, Any] = {
        "query": {"multi_match": {"query": query, "fields": ["title^2", "body"]}},
        "size": size,
    }
    if window is not None:
        body["rerank"] = {"window": window}
    return json.dumps(body).encode()


# --- 1. pass-through overhead --------------------------------------------------------------


def scenario_passthrough(b: Bench) -> Section:
    sec = Section(1, "Pass-through overhead (rerank rolled out to nobody)")
    es_url, stub_pid = b.start_server("es-stub-pass", "es", "--hits", "10")
    sidecars = {}
    for loop in ("uvloop", "asyncio"):
        sidecars[loop] = b.sidecar(
            f"pass-{loop}",
            es_url,
            BUNDLED_MODEL,
            {
                "RERANK_SIDECAR__ROLLOUT__DEFAULT": "off",
                "RERANK_SIDECAR__SERVER__UVLOOP": "true" if loop == "uvloop" else "false",
            },
        )
    path = f"/{bench_proxy.INDEX}/_search"
    bodies = bench_proxy._bodies()
    groups: list[tuple[int, int, int]] = [(16, b.scale(1500, 500), b.scale(4, 2))]
    if not b.quick:
        groups.append((1, 400, 2))
    results: dict[int, list[LoadTarget]] = {}
    for concurrency, per_round, rounds in groups:
        targets = [
            LoadTarget(
                "direct ES (stub)",
                es_url + path,
                lambda _: bodies,
                concurrency,
                per_round,
                pid=stub_pid,
            )
        ]
        for loop, sc in sidecars.items():
            targets.append(
                LoadTarget(
                    f"sidecar ({loop})",
                    sc.url + path,
                    lambda _: bodies,
                    concurrency,
                    per_round,
                    pid=sc.proc.pid,
                )
            )
        asyncio.run(interleaved(targets, rounds, warm=300))
        results[concurrency] = targets
        sec.body += [
            f"Concurrency {concurrency}, {rounds} interleaved rounds:",
            "",
            latency_table(targets),
            "",
        ]
    direct, uv = results[16][0], results[16][1]
    add50 = (uv.result.pct(50) - direct.result.pct(50)) * 1000
    add99 = (uv.result.pct(99) - direct.result.pct(99)) * 1000
    c1 = ""
    if 1 in results:
        d1, s1 = results[1][0], results[1][1]
        c1 = (
            f" At concurrency 1 (no queueing) the sidecar adds "
            f"{(s1.result.pct(50) - d1.result.pct(50)) * 1000:.2f} ms at p50."
        )
    why = (
        f"CPU-bound on {os.cpu_count()} cores: the sidecar spends {uv.server_us or 0:.0f} µs "
        f"of CPU per request (parse the request line and headers, forward, stream the "
        f"answer back), the stub {direct.server_us or 0:.0f} µs and the load generator "
        f"{uv.generator_us:.0f} µs; the three processes share the cores, so at c=16 requests "
        f"queue for a core and the closed loop turns that into latency (Little's law: "
        f"16 / {uv.result.throughput:.0f} req/s = "
        f"{16 / max(uv.result.throughput, 1) * 1000:.1f} ms "
        f"vs 16 / {direct.result.throughput:.0f} req/s direct).{c1}"
    )
    ok50, ok99 = add50 <= PASS_P50_MS, add99 <= PASS_P99_MS
    sec.goals += [
        Goal(
            "1 pass-through, c=16",
            f"added p50 ≤ {PASS_P50_MS} ms",
            f"{add50:+.2f} ms",
            ok50,
            "" if ok50 else why,
        ),
        Goal(
            "1 pass-through, c=16",
            f"added p99 ≤ {PASS_P99_MS} ms",
            f"{add99:+.2f} ms",
            ok99,
            "" if ok99 else why,
        ),
    ]
    ceiling = direct.result.throughput
    sec.body.append(
        f"Load generator check: direct to the stub, generator and stub reach {ceiling:.0f} "
        f"req/s with the generator at {direct.generator_share:.0%} of a core: that is the "
        f"ceiling of this setup (and the generator's own queueing is part of the baseline's "
        f"latency, so the added latency above is if anything understated). Through the "
        f"sidecar, {uv.result.throughput:.0f} req/s with the generator at "
        f"{uv.generator_share:.0%} of a core ({uv.generator_us:.0f} µs/request): the "
        "generator had room to spare, the sidecar is the limit."
    )
    return sec


# --- 2. score cache ------------------------------------------------------------------------


def scenario_cache(b: Bench) -> Section:
    sec = Section(2, "Rerank with a cold vs a hot score cache (bundled MiniLM, window 20)")
    es_url, stub_pid = b.start_server("es-stub", "es", "--hits", "20")
    sc = b.sidecar(
        "cache",
        es_url,
        BUNDLED_MODEL,
        {"RERANK_SIDECAR__RERANK__BUDGET_MS": "20000", "RERANK_SIDECAR__ROLLOUT__DEFAULT": "on"},
    )
    path = "/bench/_search"
    hot = [_search_body(q, window=20) for q in bench_proxy.QUERIES]

    def cold(r: int) -> list[bytes]:
        return [
            _search_body(f"{bench_proxy.QUERIES[i % 8]} variant {r} {i}", window=20)
            for i in range(200)
        ]

    rounds = b.scale(3, 2)
    for concurrency in (1, 16):
        n = b.scale(300, 150) if concurrency == 1 else b.scale(1000, 400)
        targets = [
            LoadTarget("direct ES (stub)", es_url + path, lambda _: hot, concurrency, n, stub_pid),
            LoadTarget(
                "sidecar, hot cache", sc.url + path, lambda _: hot, concurrency, n, sc.proc.pid
            ),
        ]
        if concurrency == 1:
            targets.append(
                LoadTarget(
                    "sidecar, cold cache", sc.url + path, cold, 1, b.scale(12, 6), sc.proc.pid
                )
            )
        asyncio.run(interleaved(targets, rounds, warm=16))
        direct, hot_t = targets[:2]
        sec.body += [
            f"Concurrency {concurrency}, {rounds} interleaved rounds:",
            "",
            latency_table(targets),
            "",
        ]
        added = (hot_t.result.pct(50) - direct.result.pct(50)) * 1000
        added99 = (hot_t.result.pct(99) - direct.result.pct(99)) * 1000
        if concurrency == 1:
            cold_t = targets[2]
            cached = hot_t.result.headers_seen.get("cached", 0)
            speedup = cold_t.result.pct(50) / hot_t.result.pct(50) if hot_t.result.pct(50) else 0
            sec.body += [
                f"A hot hit ({cached}/{hot_t.requests} answered `X-Rerank: cached`) still asks "
                f"ES and rewrites its response; it is {speedup:.0f}× faster than a cold rerank "
                "at p50.",
                "",
            ]
        ok = added <= HOT_ADDED_MS
        why = (
            "the hot path forwards to ES, parses the ES JSON, looks up 20 cached scores and "
            f"re-serializes the response: {hot_t.server_us or 0:.0f} µs of sidecar CPU per "
            f"request vs {direct.server_us or 0:.0f} µs for the stub"
        )
        if concurrency > 1:
            why += "; at c=16 requests also queue for the 2 shared cores (see scenario 1)"
        sec.goals.append(
            Goal(
                f"2 hot cache, c={concurrency}",
                f"added p50 vs ES ≤ {HOT_ADDED_MS} ms",
                f"{added:+.2f} ms (p99 {added99:+.2f} ms)",
                ok,
                "" if ok else why,
            )
        )
    return sec


# --- 3. a hanging model and the breaker ----------------------------------------------------


def scenario_faults(b: Bench) -> Section:
    sec = Section(3, f"A hanging model (budget {BUDGET_MS:.0f} ms) and the open breaker")
    es_url, stub_pid = b.start_server("es-stub-faults", "es", "--hits", "20")
    fault_url, _ = b.start_server("fault", "reranker", "--mode", "hang")
    remote = {
        "RERANK_SIDECAR__ROLLOUT__DEFAULT": "on",
        "RERANK_SIDECAR__RERANK__BUDGET_MS": str(BUDGET_MS),
        "RERANK_SIDECAR__RERANK__CACHE__ENABLED": "false",
        "RERANK_SIDECAR__MODEL__REMOTE__READ_TIMEOUT_S": "30",
        "RERANK_SIDECAR__MODEL__REMOTE__MAX_CONNECTIONS": "256",
    }
    model = fault_url + "/v1/rerank"
    never = {"RERANK_SIDECAR__RERANK__BREAKER__FAIL_MAX": "1000000000"}
    timeout_sc = b.sidecar("hang", es_url, model, {**remote, **never})
    breaker_sc = b.sidecar(
        "breaker",
        es_url,
        model,
        {
            **remote,
            "RERANK_SIDECAR__RERANK__BREAKER__FAIL_MAX": "1",
            "RERANK_SIDECAR__RERANK__BREAKER__RESET_TIMEOUT_S": "3600",
        },
    )
    pass_sc = b.sidecar(
        "hang-pass", es_url, model, {**remote, "RERANK_SIDECAR__ROLLOUT__DEFAULT": "off"}
    )
    path = "/bench/_search"
    bodies = [_search_body(q, window=20) for q in bench_proxy.QUERIES]
    # Open the breaker: the first search times out and trips it (fail_max 1).
    asyncio.run(run_load("trip", breaker_sc.url + path, bodies, concurrency=1, requests=3))
    rounds = b.scale(3, 2)
    limit = BUDGET_MS + BUDGET_SLACK_MS
    for concurrency in (16, 1):
        n = b.scale(1000, 400) if concurrency > 1 else b.scale(300, 150)
        hang_n = b.scale(320, 160) if concurrency > 1 else b.scale(30, 15)

        same = lambda _: bodies  # noqa: E731
        targets = [
            LoadTarget(label, url + path, same, concurrency, count, pid)
            for label, url, count, pid in (
                ("direct ES (stub)", es_url, n, stub_pid),
                ("sidecar pass-through (rollout off)", pass_sc.url, n, pass_sc.proc.pid),
                ("sidecar, breaker open", breaker_sc.url, n, breaker_sc.proc.pid),
                ("sidecar, model hangs", timeout_sc.url, hang_n, timeout_sc.proc.pid),
            )
        ]
        asyncio.run(interleaved(targets, rounds, warm=32))
        direct, passthrough, breaker, hang = targets
        sec.body += [
            f"Concurrency {concurrency}, {rounds} interleaved rounds:",
            "",
            latency_table(targets),
            "",
        ]
        p99 = hang.result.pct(99) * 1000
        fallbacks = hang.result.headers_seen.get("fallback", 0)
        ok_t = p99 <= limit
        why_t = (
            f"the budget covers the model stage only: ES time comes first (p99 "
            f"{direct.result.pct(99) * 1000:.1f} ms here), and when the budget expires for "
            f"{concurrency} searches at once their fallbacks ({hang.server_us or 0:.0f} µs "
            "CPU each: cancel the model call, rewrite the ES answer) queue for 2 shared cores"
        )
        sec.goals.append(
            Goal(
                f"3 model hangs, c={concurrency}",
                f"p99 ≤ budget + {BUDGET_SLACK_MS:.0f} ms = {limit:.0f} ms",
                f"{p99:.1f} ms ({fallbacks}/{hang.requests} fallback)",
                ok_t,
                "" if ok_t else why_t,
            )
        )
        gap = (breaker.result.pct(50) - passthrough.result.pct(50)) * 1000
        ok_b = abs(gap) <= BREAKER_P50_MS
        why_b = (
            "with the breaker open the sidecar still parses the search, asks ES for the "
            "window and rewrites the response (fallback annotation), where pass-through "
            f"streams it: {breaker.server_us or 0:.0f} vs {passthrough.server_us or 0:.0f} "
            "µs CPU per request"
        )
        if concurrency > 1:
            why_b += ", which at c=16 on 2 shared cores becomes queueing"
        sec.goals.append(
            Goal(
                f"3 breaker open vs pass-through, c={concurrency}",
                f"p50 within {BREAKER_P50_MS} ms",
                f"{gap:+.2f} ms",
                ok_b,
                "" if ok_b else why_b,
            )
        )
    return sec


# --- 4. batching through the sidecar -------------------------------------------------------


def scenario_batching(b: Bench) -> Section:
    from es_integration import bench_models as bm

    sec = Section(
        4,
        f"Cross-request batching through the sidecar: {bm.CONCURRENT_REQUESTS} searches of "
        f"{bm.DOCS_PER_REQUEST} hits at once vs one by one",
    )
    model_dir = bm.build_model(b.work / "minilm-l6-seqcls")
    es_url, _ = b.start_server("es-stub-batch", "es", "--hits", str(bm.DOCS_PER_REQUEST))
    sc = b.sidecar(
        "batching",
        es_url,
        str(model_dir),
        {
            "RERANK_SIDECAR__ROLLOUT__DEFAULT": "on",
            "RERANK_SIDECAR__RERANK__BUDGET_MS": "120000",
            "RERANK_SIDECAR__ES__TIMEOUTS__READ_S": "60",
        },
    )
    path = "/bench/_search"
    n = bm.CONCURRENT_REQUESTS

    def fresh(tag: str) -> Callable[[int], list[bytes]]:
        return lambda r: [
            _search_body(f"{bench_proxy.QUERIES[i % 8]} {tag} {r} {i}", window=bm.DOCS_PER_REQUEST)
            for i in range(n)
        ]

    rounds = b.scale(3, 2)
    targets = [
        LoadTarget("one by one (c=1)", sc.url + path, fresh("seq"), 1, n, pid=sc.proc.pid),
        LoadTarget(f"all at once (c={n})", sc.url + path, fresh("par"), n, n, pid=sc.proc.pid),
    ]
    asyncio.run(interleaved(targets, rounds, warm=2))
    seq, par = targets
    ratios = [s / p for s, p in zip(seq.round_walls, par.round_walls, strict=True)]
    ratio = statistics.median(ratios)
    pairs = n * bm.DOCS_PER_REQUEST
    lines = [
        f"{rounds} interleaved rounds; every search has a new query (no cache hits). "
        f"Model: BertForSequenceClassification with MiniLM-L6 dimensions, random weights, fp32.",
        "",
        "| mode | searches/s | pairs/s | median seconds per 16 searches | p50 latency ms |",
        "|---|---|---|---|---|",
    ]
    for t in targets:
        wall = statistics.median(t.round_walls)
        lines.append(
            f"| {t.label} | {n / wall:.1f} | {pairs / wall:.0f} | {wall:.2f} | "
            f"{ms(t.result.pct(50))} |"
        )
    lines += [
        "",
        f"Ratio all-at-once / one-by-one: **{ratio:.2f}×** (per-round ratios "
        f"{', '.join(f'{x:.2f}' for x in ratios)}).",
    ]
    sec.body += lines
    ok = ratio >= BATCHING_RATIO
    sec.goals.append(
        Goal(
            "4 batching via sidecar",
            f"≥ {BATCHING_RATIO}× one-by-one throughput",
            f"{ratio:.2f}×",
            ok,
            ""
            if ok
            else (
                f"CPU-bound: one search of {bm.DOCS_PER_REQUEST} pairs already keeps both "
                "cores busy in matrix products, so batching searches together saves only the "
                "per-pass overhead, not FLOPs (see scenario 5: the stack runs at the bare "
                "model's speed). The 1.8× gain is an accelerator property: a GPU pass over "
                "20 pairs leaves the device mostly idle."
            ),
        )
    )
    return sec


# --- 5. model-stage efficiency and int8 ----------------------------------------------------


def scenario_model(b: Bench) -> Section:
    import random

    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from es_integration import bench_models as bm
    from sidecar.config import ModelConfig, WorkerConfig
    from sidecar.models.loader import create_scorer
    from sidecar.models.quantize import quantize_for_cpu

    sec = Section(5, "Model-stage efficiency (MiniLM-L6-sized cross-encoder) and CPU int8")
    worker = WorkerConfig()
    size = worker.max_batch_pairs
    rounds = b.scale(3, 2)
    pairs_wanted = b.scale(384, 160)
    rng = random.Random(7)
    work = bm.make_workload(rng, max(1, pairs_wanted // bm.DOCS_PER_REQUEST))
    burst = bm.make_workload(rng, bm.CONCURRENT_REQUESTS)
    shape = (size * 96, bm.HIDDEN, bm.FFN)
    seconds = b.scale(10, 5) / 10
    peak = max(bm.matmul_gflops(2048, 2048, 2048, seconds), bm.matmul_gflops(*shape, seconds))
    directory = bm.build_model(b.work / "minilm-l6-seqcls-model")
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    fp32: torch.nn.Module = BertForSequenceClassification.from_pretrained(str(directory))
    fp32.train(False)
    int8, how = quantize_for_cpu(
        BertForSequenceClassification.from_pretrained(str(directory)),
        "dynamic_int8",
        torch.device("cpu"),
    )
    bf16: torch.nn.Module = BertForSequenceClassification.from_pretrained(
        str(directory), dtype=torch.bfloat16
    )
    bf16.train(False)
    models = {"fp32": fp32, "int8": int8, "bf16": bf16}
    pairs = work.pairs
    encoded = tokenizer([q for q, _ in pairs], [d for _, d in pairs], truncation="only_second")
    lengths = [len(ids) for ids in encoded["input_ids"]]
    useful = sum(bm.flops_per_pair(n) for n in lengths)
    arrival = bm.padded_batches(tokenizer, pairs, size)
    by_length = sorted(range(len(pairs)), key=lambda i: -lengths[i])
    # The bare loop gets the best case: globally length-sorted batches (least padding).
    batches = bm.padded_batches(tokenizer, [pairs[i] for i in by_length], size)

    def padding(of: list[dict[str, torch.Tensor]]) -> float:
        return sum(int(x["input_ids"].numel()) for x in of) / sum(lengths) - 1

    kinds = ("fp32", "int8", "bf16")
    contenders = [f"{how_} {kind}" for kind in kinds for how_ in ("bare", "stack")]
    times: dict[str, list[float]] = {k: [] for k in (*contenders, "apart", "together")}
    #: Pairs per forward pass of each serving stack: all of them, and those of the measured
    #: ``serve_all`` rounds.
    passes: dict[str, list[int]] = {kind: [] for kind in kinds}
    measured: dict[str, list[int]] = {kind: [] for kind in kinds}

    async def measure() -> None:
        configs = {
            "fp32": ModelConfig(name=str(directory)),
            "int8": ModelConfig(name=str(directory), cpu_quantization="dynamic_int8"),
            "bf16": ModelConfig(name=str(directory), dtype="bfloat16"),
        }
        scorers = {kind: create_scorer(config, worker) for kind, config in configs.items()}
        for scorer in scorers.values():
            await scorer.start()
        try:
            for kind in kinds:
                await bm.serve_all(scorers[kind], bm.Workload(work.queries[:2], work.requests[:2]))
                bm.bare_round(models[kind], batches[:1])
            for kind in kinds:
                scorers[kind].add_batch_observer(_pass_recorder(passes[kind]))
            for _ in range(rounds):
                for kind in kinds:
                    times[f"bare {kind}"].append(bm.bare_round(models[kind], batches))
                    before = len(passes[kind])
                    times[f"stack {kind}"].append(await bm.serve_all(scorers[kind], work))
                    measured[kind] += passes[kind][before:]
                times["apart"].append(await bm.serve_one_by_one(scorers["fp32"], burst))
                times["together"].append(await bm.serve_all(scorers["fp32"], burst))
        finally:
            for scorer in scorers.values():
                await scorer.close()

    asyncio.run(measure())
    n = len(pairs)
    med = {k: statistics.median(v) for k, v in times.items()}
    padded = padding(batches)
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads. Yardstick: "
        f"fp32 matmul at **{peak:.1f} GFLOP/s** (best of 2048³ and {shape[0]}×{bm.HIDDEN}@"
        f"{bm.HIDDEN}×{bm.FFN}, measured in this run). {n} pairs in searches of "
        f"{bm.DOCS_PER_REQUEST}, {statistics.mean(lengths):.0f} tokens/pair on average, "
        f"{useful / n / 1e9:.2f} GFLOP/pair (padding not counted). The bare loop runs "
        f"pre-tokenized, globally length-sorted batches of {size} ({padded:.0%} padding; "
        f"{padding(arrival):.0%} in arrival order); the serving stack gets the searches as "
        "they come (`Scorer.score` → tokenizer thread → batching worker → backend). int8: "
        f"`model.cpu_quantization: dynamic_int8` → {how}; bf16: the existing "
        f"`model.dtype: bfloat16` on the CPU, for comparison. {rounds} interleaved rounds, "
        "medians.",
        "",
        "| contender | pairs/s | GFLOP/s (fp32-equivalent) | of fp32 matmul peak | "
        "× fp32 serving stack | pairs per forward pass |",
        "|---|---|---|---|---|---|",
    ]
    per_pass = {
        kind: statistics.mean(sizes) if sizes else float("nan") for kind, sizes in measured.items()
    }
    bare_pass = n / len(batches)
    for key in contenders:
        took = med[key]
        flops = useful / took / 1e9
        label = key.replace("bare", "bare model(**batch)").replace("stack", "serving stack")
        kind = key.split()[1]
        size_ = per_pass[kind] if key.startswith("stack") else bare_pass
        lines.append(
            f"| {label} | {n / took:.1f} | {flops:.1f} | {flops / peak:.0%} | "
            f"{med['stack fp32'] / took:.2f}× | {size_:.1f} |"
        )
    burst_pairs = bm.CONCURRENT_REQUESTS * bm.DOCS_PER_REQUEST
    ratio_scorer = statistics.median(
        a / t for a, t in zip(times["apart"], times["together"], strict=True)
    )
    keep16 = med["bare bf16"] / med["stack bf16"]
    keep32 = med["bare fp32"] / med["stack fp32"]
    if keep16 < 0.8 * keep32:
        lines += [
            "",
            f"The serving stack runs at {keep32:.2f}× the bare loop's speed in fp32 but at "
            f"{keep16:.2f}× in bf16: its forward passes average {per_pass['bf16']:.1f} pairs "
            f"in bf16 ({per_pass['fp32']:.1f} in fp32) against {bare_pass:.0f} in the bare "
            "loop. The worker cuts length-sorted batches into short passes where its "
            "warm-up-calibrated per-pass overhead says that saves padding, and starts passes "
            "while searches still arrive from the tokenizer thread. fp32 kernels run as fast or "
            "faster on such small passes; bf16 (AMX) kernels need larger ones. A worker-side "
            "follow-up, not a property of bf16.",
        ]
    lines += [
        "",
        f"Scorer level, {bm.CONCURRENT_REQUESTS} requests × {bm.DOCS_PER_REQUEST} docs (fp32): "
        f"one after another {burst_pairs / med['apart']:.0f} pairs/s, concurrent "
        f"{burst_pairs / med['together']:.0f} pairs/s, ratio {ratio_scorer:.2f}×.",
    ]
    sec.body += lines
    eff = useful / med["stack fp32"] / 1e9 / peak
    bare_eff = useful / med["bare fp32"] / 1e9 / peak
    stack_vs_bare = med["bare fp32"] / med["stack fp32"]
    ok = eff >= EFFICIENCY
    sec.goals.append(
        Goal(
            "5 model stage, fp32",
            f"≥ {EFFICIENCY:.0%} of matmul-bound pairs/s",
            f"{eff:.0%} (bare loop {bare_eff:.0%}; stack = {stack_vs_bare:.2f}× bare)",
            ok,
            ""
            if ok
            else (
                f"the bare model(**batch) loop itself reaches only {bare_eff:.0%}: MiniLM-L6's "
                f"matrices are small (hidden {bm.HIDDEN}: 384-wide GEMMs run well below the "
                "2048³ peak), and softmax, GELU, LayerNorm and attention reshapes are "
                f"memory-bound work the FLOP count does not credit; padding adds {padded:.0%}. "
                f"The serving stack runs at {stack_vs_bare:.2f}× the bare loop's speed, so the "
                "gap is in the kernels, not in the sidecar."
            ),
        )
    )
    speedup = med["stack fp32"] / med["stack int8"]
    bf16_speedup = med["stack fp32"] / med["stack bf16"]
    ok8 = speedup >= INT8_SPEEDUP
    why8 = (
        "only the linear layers run in int8; attention products, softmax, GELU and LayerNorm "
        "stay fp32, and activations are quantized on every call, a cost that weighs more on "
        f"the serving stack's short passes ({per_pass['int8']:.1f} pairs on average, vs "
        f"{bare_pass:.0f} in the bare loop, which reaches "
        f"{med['bare fp32'] / med['bare int8']:.2f}×)"
    )
    bf16_bare = med["bare fp32"] / med["bare bf16"]
    if max(bf16_speedup, bf16_bare) > speedup:
        why8 += (
            f". On this CPU (AMX/AVX512-BF16 units) `model.dtype: bfloat16` runs the bare "
            f"model {bf16_bare:.1f}× faster than fp32 and the serving stack {bf16_speedup:.1f}× "
            "(see the note on pass sizes), with a far smaller ranking change (docs: eval)"
        )
    sec.goals.append(
        Goal(
            "5 CPU int8 (dynamic_int8) speed",
            f"≥ {INT8_SPEEDUP:.0f}× fp32 pairs/s",
            f"{speedup:.2f}× (bare loop {med['bare fp32'] / med['bare int8']:.2f}×)",
            ok8,
            "" if ok8 else why8,
        )
    )
    sec.goals.append(
        Goal(
            "5 CPU bf16 (model.dtype: bfloat16), for comparison",
            "none (an existing option)",
            f"{bf16_speedup:.2f}× fp32 pairs/s (bare loop "
            f"{med['bare fp32'] / med['bare bf16']:.2f}×)",
            None,
        )
    )
    return sec


def _pass_recorder(sizes: list[int]) -> Callable[[int, int], None]:
    def record(pairs: int, tokens: int) -> None:
        sizes.append(pairs)

    return record


SCENARIOS: dict[int, Callable[[Bench], Section]] = {
    1: scenario_passthrough,
    2: scenario_cache,
    3: scenario_faults,
    4: scenario_batching,
    5: scenario_model,
}


# --- report --------------------------------------------------------------------------------


def summary_table(sections: list[Section]) -> str:
    lines = [
        "| scenario | goal | measured | verdict | why (where missed) |",
        "|---|---|---|---|---|",
    ]
    for sec in sections:
        for g in sec.goals:
            lines.append(f"| {g.scenario} | {g.goal} | {g.measured} | {g.verdict} | {g.why} |")
    return "\n".join(lines)


def document(b: Bench, started: float, load_before: str, load_after: str, argv: str) -> str:
    total = time.time() - started
    command = f"python -m es_integration bench {argv}".strip()
    parts = [
        "## Performance benchmarks",
        "",
        f"Measured {now_text(started)} on {machine_description()}. Run: `{command}` "
        f"({'quick' if b.quick else 'full'}, {total / 60:.1f} min). Load average before: "
        f"{load_before}; after: {load_after} (this machine is shared: other processes' load "
        "shows there and slows every contender alike, since contenders run in interleaved "
        "rounds).",
        "",
        "### Goals",
        "",
        summary_table(b.sections),
        "",
        "Latency is measured by the client (the load generator, this process) per request; "
        "'generator CPU' is the load generator's own CPU time per request and its share of "
        "one core during that contender's rounds: near 100% only on the direct-to-stub rows "
        "at c=16, where generator + stub set the ceiling of this setup; on every sidecar row "
        "it stays far below, so the sidecar, not the generator, sets those numbers. 'server "
        "CPU' is the CPU time of the process serving that path (stub ES or sidecar) per "
        "request, from /proc.",
        "",
    ]
    parts += [sec.markdown() for sec in b.sections]
    return "\n".join(parts)


def run_cli(args: argparse.Namespace) -> int:
    only = sorted(set(args.only or SCENARIOS))
    unknown = [n for n in only if n not in SCENARIOS]
    if unknown:
        print(f"bench: unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}")
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.time()
    load_before = load_average()
    print(f"machine: {machine_description()}\nload average: {load_before}", flush=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        b = Bench(quick=args.quick, work=work, stack=stack)
        for number in only:
            t0 = time.perf_counter()
            print(f"\n== scenario {number} ...", flush=True)
            with contextlib.ExitStack() as inner:
                b.stack = inner
                sec = SCENARIOS[number](b)
            sec.seconds = time.perf_counter() - t0
            b.sections.append(sec)
            print(sec.markdown())
            for g in sec.goals:
                print(f"goal {g.scenario}: {g.goal}: {g.measured} -> {g.verdict}")
            print(f"(scenario {number}: {sec.seconds:.0f} s)", flush=True)
    load_after = load_average()
    print("\n" + summary_table(b.sections))
    print(f"\nload average after: {load_after}; total {(time.time() - started) / 60:.1f} min")
    argv = " ".join(
        (["--quick"] if args.quick else []) + (["--only", *map(str, only)] if args.only else [])
    )
    text = document(b, started, load_before, load_after, argv)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    if args.write_docs:
        _replace_section(args.write_docs, "bench", text, before="eval")
        print(f"updated {args.write_docs}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument(
        "--only", nargs="+", type=int, metavar="N", help="run only these scenarios (1-5)"
    )
    parser.add_argument("--out", type=Path, help="also write the markdown to this file")
    parser.add_argument(
        "--write-docs",
        nargs="?",
        const=DOCS_PATH,
        type=Path,
        help="rewrite the benchmark section of docs/benchmarks.md (or this file)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m es_integration bench", description=(__doc__ or "").split("\n\n")[0]
    )
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
