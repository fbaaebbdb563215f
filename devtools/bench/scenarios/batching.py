"""Scenario 4: cross-request batching through a sidecar: 16 concurrent searches of 20 hits
vs the same searches one by one (a MiniLM-L6-sized cross-encoder, random weights)."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable

from devtools.bench import model_work as mw
from devtools.bench.contenders import LoadTarget, interleaved, ms
from devtools.bench.results import Goal, Section
from devtools.bench.scenarios.common import QUERIES, search_body
from devtools.bench.servers import Bench
from devtools.machine import usable_cores

BATCHING_RATIO = 1.8


def run(b: Bench) -> Section:
    n = mw.CONCURRENT_REQUESTS
    docs = mw.DOCS_PER_REQUEST
    sec = Section(
        4,
        f"Cross-request batching through the sidecar: {n} searches of {docs} hits at once vs "
        "one by one",
    )
    model_dir = mw.build_model(b.work / "minilm-l6-seqcls")
    es_url, _ = b.start_fake("es-stub-batch", "es", "--hits", str(docs))
    sc = b.sidecar(
        "batching",
        es_url,
        str(model_dir),
        {
            "rollout": {"default": "on"},
            "rerank": {"budget_ms": 120000},
            "es": {"timeouts": {"read_s": 60}},
            # Random weights rank at random: the start-up self-test would refuse the model.
            "model": {"self_test": False},
        },
    )
    path = "/bench/_search"

    def fresh(tag: str) -> Callable[[int], list[bytes]]:
        return lambda r: [
            search_body(f"{QUERIES[i % 8]} {tag} {r} {i}", window=docs) for i in range(n)
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
    pairs = n * docs
    lines = [
        f"{rounds} interleaved rounds; every search has a new query (no cache hits). "
        "Model: BertForSequenceClassification with MiniLM-L6 dimensions, random weights, fp32.",
        "",
        f"| mode | searches/s | pairs/s | median seconds per {n} searches | p50 latency ms | "
        "sidecar CPU ms/search | cores busy (sidecar) |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        wall = statistics.median(t.round_walls)
        cpu = f"{t.server_us / 1000:.1f}" if t.server_us is not None else "n/a"
        share = f"{t.server_share:.2f}" if t.server_share is not None else "n/a"
        lines.append(
            f"| {t.label} | {n / wall:.1f} | {pairs / wall:.0f} | {wall:.2f} | "
            f"{ms(t.result.pct(50))} | {cpu} | {share} |"
        )
    lines += [
        "",
        f"Ratio all-at-once / one-by-one: **{ratio:.2f}×** (per-round ratios "
        f"{', '.join(f'{x:.2f}' for x in ratios)}); {usable_cores()} cores usable.",
    ]
    sec.body += lines
    ok = ratio >= BATCHING_RATIO
    why = (
        f"one by one, the sidecar already kept {seq.server_share or 0:.2f} of "
        f"{usable_cores()} usable cores busy ({(seq.server_us or 0) / 1000:.1f} ms CPU per "
        f"search); all at once {par.server_share or 0:.2f} cores "
        f"({(par.server_us or 0) / 1000:.1f} ms per search). Scenario 5 compares the serving "
        "stack with a bare forward loop on the same model."
    )
    sec.goals.append(
        Goal(
            "4 batching via sidecar",
            f"≥ {BATCHING_RATIO}× one-by-one throughput",
            f"{ratio:.2f}×",
            ok,
            "" if ok else why,
        )
    )
    return sec
