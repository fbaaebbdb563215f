"""Benchmark: what the sidecar adds to a pass-through ``_search`` (rerank rolled out to nobody).

    python -m es_integration.bench_proxy [--upstream stub|local|both] [--concurrency 16]

In one run the same ``_search`` load goes to ES directly, through a sidecar on uvloop and
through a sidecar on plain asyncio, in alternating rounds (so drift on a shared machine hits
all alike). Prints p50/p95/p99 latency and throughput for each, the added latency and the
ratios to direct ES.

Goal: the sidecar adds <= 0.5 ms at p50 and <= 2 ms at p99 at concurrency 16.

Two upstreams: the local ES-compatible server with the sample corpus (real searches; its
own latency and variance are large) and a stub ES answering canned hits in well under a
millisecond (``es_integration.bench_servers es``), which isolates what the sidecar itself adds.

The load generator is this process (aiohttp, one event loop); ES and the sidecars are other
processes. Saturation check: the generator's ceiling is the direct-ES throughput of the
same run; a sidecar throughput well below it is the sidecar's limit, not the generator's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from elasticsearch import Elasticsearch

from es_integration.corpus import load_sample
from es_integration.loadgen import LoadResult, fmt_ms, run_load
from es_integration.local_es import LocalES, free_port, wait_ready
from es_integration.sidecar_proc import SidecarProcess

BENCH_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
INDEX = "bench-proxy"
QUERIES = [
    "renew a borrowed book online",
    "reset my account password",
    "history of the printing press",
    "wifi not working in the reading room",
    "children's books about the ocean",
    "how to cite a journal article",
    "refund for a late fee",
    "printer out of toner",
]


def _bodies() -> list[bytes]:
    return [
        json.dumps(
            {"query": {"multi_match": {"query": q, "fields": ["title^2", "body"]}}, "size": 10}
        ).encode()
        for q in QUERIES
    ]


@dataclass
class Target:
    label: str
    url: str
    result: LoadResult


async def _rounds(targets: list[Target], concurrency: int, total: int, rounds: int) -> None:
    bodies = _bodies()
    per_round = max(concurrency, total // rounds)
    for t in targets:  # warm pools and caches before measuring
        await run_load(
            "warm", f"{t.url}/{INDEX}/_search", bodies, concurrency=concurrency, requests=300
        )
    for _ in range(rounds):
        for t in targets:
            t.result.merge(
                await run_load(
                    t.label,
                    f"{t.url}/{INDEX}/_search",
                    bodies,
                    concurrency=concurrency,
                    requests=per_round,
                    header="X-Rerank",
                )
            )


def _start_stub(work: Path, stack: ExitStack) -> str:
    port = free_port()
    port_arg = ("--port", str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "es_integration.bench_servers", "es", "--hits", "10", *port_arg],
        stdout=subprocess.DEVNULL,
        stderr=(work / "stub.log").open("wb"),
    )
    stack.callback(lambda: (proc.terminate(), proc.wait(10)))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, 30, proc)
    return url


def run(upstream: str, args: argparse.Namespace) -> list[Target]:
    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    with ExitStack() as stack:
        if upstream == "stub":
            es_url = _start_stub(work, stack)
        elif args.es_url:
            es_url = args.es_url
        else:
            es_url = stack.enter_context(LocalES.start(data_dir=work / "es")).url
        if upstream != "stub":
            load_sample(Elasticsearch(es_url, request_timeout=60), INDEX)
        targets = [Target("direct ES", es_url, LoadResult("direct ES"))]
        for loop in ("uvloop", "asyncio"):
            env = {
                "RERANK_SIDECAR__SERVER__ACCESS_LOG": "false",
                "RERANK_SIDECAR__ROLLOUT__DEFAULT": "off",
                "RERANK_SIDECAR__SERVER__UVLOOP": "true" if loop == "uvloop" else "false",
            }
            sc = stack.enter_context(
                SidecarProcess.start(
                    es_url,
                    log_path=work / f"sidecar-{loop}.log",
                    env=env,
                    model=BENCH_MODEL,
                    wait_ready=True,
                )
            )
            label = f"sidecar ({loop})"
            targets.append(Target(label, sc.url, LoadResult(label)))
            print(f"sidecar on {loop}: start-up (spawn to /_sidecar/health) {sc.startup_s:.2f} s")
        asyncio.run(_rounds(targets, args.concurrency, args.requests, args.rounds))
    return targets


def report(upstream: str, targets: list[Target], concurrency: int) -> str:
    what = "stub ES (canned hits)" if upstream == "stub" else "local ES-compatible server"
    base = targets[0].result
    lines = [
        f"### _search pass-through to {what}, concurrency {concurrency}",
        "",
        "| path | requests | errors | p50 ms | p95 ms | p99 ms | req/s | added p50 | added p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        r = t.result
        add50 = (r.pct(50) - base.pct(50)) * 1000
        add99 = (r.pct(99) - base.pct(99)) * 1000
        lines.append(
            f"| {t.label} | {len(r.latencies_s)} | {r.errors} | {fmt_ms(r.pct(50))} | "
            f"{fmt_ms(r.pct(95))} | {fmt_ms(r.pct(99))} | {r.throughput:.0f} | "
            f"{add50:+.2f} | {add99:+.2f} |"
        )
        bad = {k: v for k, v in r.statuses.items() if k != 200}
        if bad:
            lines.append(f"|   non-200: {bad} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m es_integration.bench_proxy")
    parser.add_argument("--es-url", help="an existing ES for --upstream local")
    parser.add_argument("--upstream", choices=["stub", "local", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=6000, help="per path, all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; goal: added p50 <= 0.5 ms, p99 <= 2 ms"
    )
    for upstream in ["stub", "local"] if args.upstream == "both" else [args.upstream]:
        targets = run(upstream, args)
        print()
        print(report(upstream, targets, args.concurrency))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
