"""Scenario 1: what the sidecar adds to a pass-through ``_search`` (rerank rolled out to
nobody), on uvloop and on plain asyncio, against ES directly.

Upstream: the stub ES (canned hits in a fraction of a millisecond), which isolates the
sidecar's own cost; with ``--real-es`` also a real ES-compatible server holding the sample
corpus (real searches, whose own latency and variance are larger).
"""

from __future__ import annotations

import asyncio

from devtools.bench.contenders import LoadTarget, interleaved, latency_table
from devtools.bench.results import Goal, Section
from devtools.bench.scenarios.common import QUERIES, search_body
from devtools.bench.servers import BUNDLED_MODEL, Bench
from devtools.machine import usable_cores
from es_integration.corpus import load_sample
from es_integration.local_es import LocalES
from es_integration.sidecar_proc import SidecarProcess

PASS_P50_MS, PASS_P99_MS = 0.5, 2.0
INDEX = "bench"
LOOPS = ("uvloop", "asyncio")


def _sidecars(b: Bench, es_url: str, tag: str) -> dict[str, SidecarProcess]:
    return {
        loop: b.sidecar(
            f"pass-{tag}-{loop}",
            es_url,
            BUNDLED_MODEL,
            {"rollout": {"default": "off"}, "tuning": {"http": {"uvloop": loop == "uvloop"}}},
        )
        for loop in LOOPS
    }


#: concurrency -> (the contenders, the rounds they ran)
Measured = dict[int, tuple[list[LoadTarget], int]]


def _measure(
    b: Bench, es_url: str, es_pid: int | None, what: str, sidecars: dict[str, SidecarProcess]
) -> Measured:
    path = f"/{INDEX}/_search"
    bodies = [search_body(q) for q in QUERIES]
    groups: list[tuple[int, int, int]] = [(16, b.scale(1500, 500), b.scale(4, 2))]
    if not b.quick:
        groups.append((1, 400, 2))
    results: Measured = {}
    for concurrency, per_round, rounds in groups:
        targets = [
            LoadTarget(
                f"direct ES ({what})",
                es_url + path,
                lambda _: bodies,
                concurrency,
                per_round,
                es_pid,
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
        results[concurrency] = (targets, rounds)
    return results


def _tables(sec: Section, what: str, results: Measured) -> None:
    for concurrency, (targets, rounds) in results.items():
        sec.body += [
            f"{what}, concurrency {concurrency}, {rounds} interleaved rounds:",
            "",
            latency_table(targets),
            "",
        ]


def _cpu_figures(direct: LoadTarget, via: LoadTarget) -> str:
    cores = usable_cores()
    busy = (via.server_share or 0.0) + (direct.server_share or 0.0) + via.generator_share
    tput = max(via.result.throughput, 1.0)
    return (
        f"CPU per request: sidecar {via.server_us or 0:.0f} µs, stub {direct.server_us or 0:.0f} "
        f"µs, load generator {via.generator_us:.0f} µs; during the sidecar's rounds the three "
        f"processes kept {busy:.2f} of {cores} usable cores busy. Little's law at c=16: "
        f"16 / {tput:.0f} req/s = {16 / tput * 1000:.1f} ms through the sidecar vs 16 / "
        f"{direct.result.throughput:.0f} req/s = "
        f"{16 / max(direct.result.throughput, 1.0) * 1000:.1f} ms direct"
    )


def _generator_check(direct: LoadTarget, via: LoadTarget) -> str:
    verdict = (
        "below one core, so the generator was not what limited the sidecar's rows"
        if via.generator_share < 0.8
        else "close to a full core: the generator may have limited these figures"
    )
    return (
        f"Load generator check: direct to the stub, generator and stub reach "
        f"{direct.result.throughput:.0f} req/s with the generator at "
        f"{direct.generator_share:.0%} of a core (the ceiling of this setup). Through the "
        f"sidecar, {via.result.throughput:.0f} req/s with the generator at "
        f"{via.generator_share:.0%} of a core ({via.generator_us:.0f} µs/request): {verdict}."
    )


def run(b: Bench) -> Section:
    sec = Section(1, "Pass-through overhead (rerank rolled out to nobody)")
    es_url, stub_pid = b.start_fake("es-stub-pass", "es", "--hits", "10")
    sidecars = _sidecars(b, es_url, "stub")
    sec.body += [
        "Sidecar start-up (spawn to /_sidecar/health): "
        + ", ".join(f"{loop} {sc.startup_s:.2f} s" for loop, sc in sidecars.items())
        + ".",
        "",
    ]
    results = _measure(b, es_url, stub_pid, "stub", sidecars)
    _tables(sec, "Stub ES", results)
    direct, uv = results[16][0][:2]
    add50 = (uv.result.pct(50) - direct.result.pct(50)) * 1000
    add99 = (uv.result.pct(99) - direct.result.pct(99)) * 1000
    c1 = ""
    if 1 in results:
        d1, s1 = results[1][0][:2]
        c1 = (
            f" At concurrency 1 the sidecar adds "
            f"{(s1.result.pct(50) - d1.result.pct(50)) * 1000:.2f} ms at p50."
        )
    why = _cpu_figures(direct, uv) + "." + c1
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
    sec.body += [_cpu_figures(direct, uv) + ".", "", _generator_check(direct, uv), ""]
    if b.real_es is not None:
        _real_es(b, sec)
    return sec


def _real_es(b: Bench, sec: Section) -> None:
    es_url = b.real_es
    if es_url == "local" or es_url is None:
        es_url = b.stack.enter_context(LocalES.start(data_dir=b.work / "es")).url
    load_sample(es_url, INDEX)
    results = _measure(b, es_url, None, "ES-compatible server", _sidecars(b, es_url, "real"))
    _tables(sec, f"ES-compatible server at {es_url} (sample corpus)", results)
    direct, uv = results[16][0][:2]
    added = (uv.result.pct(50) - direct.result.pct(50)) * 1000
    sec.goals.append(
        Goal(
            "1 pass-through to a real ES, c=16",
            "none (ES's own latency varies)",
            f"added p50 {added:+.2f} ms",
            None,
        )
    )
