"""Scenario 2: rerank with a cold score cache (a new query every request) vs a hot one
(scores cached, ES still asked) vs ES directly; the bundled MiniLM, window 20."""

from __future__ import annotations

import asyncio

from devtools.bench.contenders import LoadTarget, interleaved, latency_table
from devtools.bench.results import Goal, Section
from devtools.bench.scenarios.common import QUERIES, search_body
from devtools.bench.servers import BUNDLED_MODEL, Bench

HOT_ADDED_MS = 1.0


def run(b: Bench) -> Section:
    sec = Section(2, "Rerank with a cold vs a hot score cache (bundled MiniLM, window 20)")
    es_url, stub_pid = b.start_fake("es-stub", "es", "--hits", "20")
    sc = b.sidecar(
        "cache",
        es_url,
        BUNDLED_MODEL,
        {"rerank": {"budget_ms": 20000}, "rollout": {"default": "on"}},
    )
    path = "/bench/_search"
    hot = [search_body(q, window=20) for q in QUERIES]

    def cold(r: int) -> list[bytes]:
        return [search_body(f"{QUERIES[i % 8]} variant {r} {i}", window=20) for i in range(200)]

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
            f"request vs {direct.server_us or 0:.0f} µs for the stub; the sidecar kept "
            f"{hot_t.server_share or 0:.2f} cores busy during its rounds"
        )
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
