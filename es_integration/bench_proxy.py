"""Benchmark: what the sidecar adds to a pass-through ``_search`` (rerank off).

    python -m es_integration.bench_proxy [--es-url URL] [--concurrency 16] [--requests 4000]

The same ``_search`` load goes to ES directly and through the sidecar in one run, in
alternating rounds (so drift on a shared machine hits both alike). Prints p50/p99 latency
and throughput for both, the added latency, and the ratios.

Goal: the sidecar adds <= 0.5 ms at p50 and <= 2 ms at p99 at concurrency 16.

The load generator is this process (aiohttp, one event loop); the local ES and the sidecar
are separate processes. Saturation check: the direct-ES run is the generator's ceiling, so a
sidecar run that reaches a throughput close to it was not held back by the generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
from pathlib import Path

from elasticsearch import Elasticsearch

from es_integration.corpus import load_sample
from es_integration.loadgen import LoadResult, fmt_ms, run_load
from es_integration.local_es import LocalES
from es_integration.sidecar_proc import SidecarProcess

BENCH_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
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


async def _rounds(
    es_url: str, sc_url: str, index: str, concurrency: int, total: int, rounds: int
) -> tuple[LoadResult, LoadResult]:
    bodies = _bodies()
    direct, sidecar = LoadResult("direct ES"), LoadResult("through sidecar")
    per_round = max(concurrency, total // rounds)
    # Warm both paths (connection pools, JIT-less caches in ES) before measuring.
    await run_load(
        "warm", f"{es_url}/{index}/_search", bodies, concurrency=concurrency, requests=200
    )
    await run_load(
        "warm", f"{sc_url}/{index}/_search", bodies, concurrency=concurrency, requests=200
    )
    for _ in range(rounds):
        direct.merge(
            await run_load(
                "d",
                f"{es_url}/{index}/_search",
                bodies,
                concurrency=concurrency,
                requests=per_round,
            )
        )
        sidecar.merge(
            await run_load(
                "s",
                f"{sc_url}/{index}/_search",
                bodies,
                concurrency=concurrency,
                requests=per_round,
                header="X-Rerank",
            )
        )
    return direct, sidecar


def _table(direct: LoadResult, sidecar: LoadResult) -> str:
    rows = [
        "| path | requests | errors | p50 ms | p95 ms | p99 ms | req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in (direct, sidecar):
        rows.append(
            f"| {r.label} | {len(r.latencies_s)} | {r.errors} | {fmt_ms(r.pct(50))} | "
            f"{fmt_ms(r.pct(95))} | {fmt_ms(r.pct(99))} | {r.throughput:.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m es_integration.bench_proxy")
    parser.add_argument("--es-url", help="an existing ES (default: start a local one)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4000, help="per path, all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--no-uvloop", action="store_true", help="run the sidecar on asyncio")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    local = None if args.es_url else LocalES.start(data_dir=work / "es")
    es_url = args.es_url or (local.url if local else "")
    try:
        index = "bench-proxy"
        count = load_sample(Elasticsearch(es_url, request_timeout=60), index)
        env = {"RERANK_SIDECAR__SERVER__ACCESS_LOG": "false"}
        if args.no_uvloop:
            env["RERANK_SIDECAR__SERVER__UVLOOP"] = "false"
        with SidecarProcess.start(
            es_url, log_path=work / "sidecar.log", env=env, model=BENCH_MODEL, wait_ready=True
        ) as sc:
            direct, sidecar = asyncio.run(
                _rounds(es_url, sc.url, index, args.concurrency, args.requests, args.rounds)
            )
            startup = sc.startup_s
    finally:
        if local is not None:
            local.close()

    add50 = (sidecar.pct(50) - direct.pct(50)) * 1000
    add99 = (sidecar.pct(99) - direct.pct(99)) * 1000
    print(f"# bench_proxy: _search pass-through, concurrency {args.concurrency}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"index: {count} docs; loop: {'asyncio' if args.no_uvloop else 'uvloop'}")
    print(f"sidecar start-up (spawn to /_sidecar/health): {startup:.2f} s")
    print()
    print(_table(direct, sidecar))
    print()
    print(f"added latency: p50 {add50:+.2f} ms (goal <= 0.5), p99 {add99:+.2f} ms (goal <= 2)")
    print(
        f"ratios sidecar/direct: p50 {sidecar.pct(50) / direct.pct(50):.2f}x, "
        f"p99 {sidecar.pct(99) / direct.pct(99):.2f}x, "
        f"throughput {sidecar.throughput / direct.throughput:.2f}x"
    )
    bad = {k: v for k, v in sidecar.statuses.items() if k != 200}
    if bad or sidecar.errors or direct.errors:
        print(f"non-200 statuses: {bad}, errors: {sidecar.errors}/{direct.errors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
