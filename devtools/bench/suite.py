"""The benchmark suite: every scenario with its baseline beside it, in one run.

    python -m devtools.bench [--quick] [--only 1 3 5] [--real-es [URL]] [--write-docs [PATH]]

Scenarios (each runs its contenders in interleaved rounds, so drift on the machine hits them
alike, and prints p50/p95/p99 latency, throughput and the ratio to the baseline):

1. pass-through overhead: ES directly vs through the sidecar with reranking rolled out to
   nobody, on uvloop and on asyncio (stub ES, so the sidecar's own cost is what differs; with
   ``--real-es`` also against a real ES-compatible server with the sample corpus), at
   concurrency 16 and at concurrency 1;
2. score cache: rerank with a cold cache (a new query every request) vs a hot cache (scores
   cached, ES still asked) vs ES directly;
3. a model that hangs (remote backend pointed at a fault server in its own process): the
   model stage gives up at the budget; the breaker open vs plain pass-through;
4. cross-request batching through a sidecar: 16 concurrent searches of 20 hits vs the same
   searches one by one (a MiniLM-L6-sized cross-encoder with random weights);
5. model-stage efficiency: pairs/s of the serving stack vs a bare forward loop vs this
   machine's matmul throughput, measured in the same run, for fp32, for
   ``model.cpu_quantization: dynamic_int8`` and for ``model.dtype: bfloat16``;
6. the split front (docker/nginx/split-front.conf): pass-through requests directly to the stub
   ES vs through nginx vs through the all-in-one sidecar, and searches through nginx and the
   sidecar vs the sidecar alone;
7. Qwen3-Reranker-0.6B's architecture (its widths, 2 of its layers): the shared prefix vs
   the plain path at catalogue titles and at 256-token documents, the two-row head vs the
   full vocabulary, and the serving stack vs a bare loop in fp32 and bf16 (also alone:
   ``python -m devtools.bench.qwen3``; on a GPU: ``python -m devtools.bench.gpu``);
8. closed-loop overload, as served (bundled MiniLM, default budget and window, msmarco-dl-5k
   in a local ES-compatible server): the capacity at concurrency 1, then 1×, 2× and 4× it;
   share reranked, mean K, nDCG@10 under load, p50/p99 against ES + budget, the breaker;
9. a noisy neighbour (300-search ``_msearch`` and large rerank-API requests) beside four
   ordinary clients, against the same clients alone;
10. slow clients (never-reading and dripping connections) beside ordinary traffic: others'
   errors and ``/_sidecar/ready``;
11. the default model at full size on this CPU (Qwen3-Reranker-0.6B's architecture, all 28
   layers, random weights) with the default budget and window, as a new user gets it:
   what ``/_sidecar/ready`` says, and what every search from the first one on gets;
12. UBI (bundled MiniLM, window 20, msmarco-dl-5k): interleaved searches served to simulated
   users with a cascade click model, their clicks sent as UBI events, the report endpoint
   checked against the same arithmetic offline, and, by resampling the pages served, how
   many interleaved queries the sign test needs to call the reranker's win (two click
   models); then the cost of logging, ``ubi.enabled`` true vs false, at rollout ``off`` and
   ``on``: added p50 and sidecar CPU per search, and what the log wrote and dropped;
13. three replicas sharing their state in Redis (``shared.url``) vs three that do not, behind
   nginx round robin: the cache hit rate on a replayed query log with repeats, and what a
   hit served from Redis adds to one served from the replica's memory (p50).

The load generator is this process (aiohttp on one event loop, ``devtools.bench.loadgen``);
ES stand-ins, fault server and sidecars are processes of their own (``servers``). Whether the
generator was the bottleneck is measured, not assumed: its own CPU time per request and its
share of a core are reported per contender, beside the server's CPU time per request (from
/proc), and the direct-to-stub throughput is the ceiling of generator + upstream in the same
run.

``--write-docs`` rewrites the benchmark section of docs/benchmarks.md with the tables, the
date, the machine (as measured) and the load average before and after the run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from devtools.bench.docs_merge import current_block, merge
from devtools.bench.results import Section, summary_table
from devtools.bench.scenarios import (
    batching,
    cache,
    default_model,
    faults,
    model,
    neighbour,
    overload,
    passthrough,
    qwen3,
    replicas,
    slow_clients,
    split_front,
    ubi,
)
from devtools.bench.servers import Bench
from devtools.docs_sections import DOCS_PATH, replace_section
from devtools.machine import load_average, machine_description, now_text

SCENARIOS: dict[int, Callable[[Bench], Section]] = {
    1: passthrough.run,
    2: cache.run,
    3: faults.run,
    4: batching.run,
    5: model.run,
    6: split_front.run,
    7: qwen3.run,
    8: overload.run,
    9: neighbour.run,
    10: slow_clients.run,
    11: default_model.run,
    12: ubi.run,
    13: replicas.run,
}
#: Scenarios that run again, right after, on ``--baseline``'s sidecar (11 runs both itself).
BEFORE_AFTER = (8, 9)


def document(
    sections: list[Section],
    *,
    quick: bool,
    started: float,
    load_before: str,
    load_after: str,
    argv: str,
) -> str:
    total = time.time() - started
    command = f"python -m devtools.bench {argv}".strip()
    parts = [
        "## Performance benchmarks",
        "",
        f"Measured {now_text(started)} on {machine_description()}. Run: `{command}` "
        f"({'quick' if quick else 'full'}, {total / 60:.1f} min). Load average before: "
        f"{load_before}; after: {load_after}. Contenders run in interleaved rounds, so load "
        "from other processes slows them alike.",
        "",
        "### Goals",
        "",
        summary_table(sections),
        "",
        "Latency is measured by the client (the load generator, this process) per request. "
        "'generator CPU' is the load generator's own CPU time per request and its share of "
        "one core during that contender's rounds; 'server CPU' is the CPU time of the process "
        "serving that path (stub ES or sidecar) per request, from /proc. A generator share "
        "near 100% means the generator, not the server, set that row's figures.",
        "",
    ]
    parts += [sec.markdown() for sec in sections]
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
    sections: list[Section] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        for number in only:
            t0 = time.perf_counter()
            print(f"\n== scenario {number} ...", flush=True)
            trees: list[Path | None] = [None]
            if args.baseline is not None and number in BEFORE_AFTER:
                trees.append(args.baseline)
            for tree in trees:
                with contextlib.ExitStack() as inner:
                    b = Bench(
                        quick=args.quick,
                        work=work / f"{number}-{len(sections)}",
                        stack=inner,
                        real_es=args.real_es,
                        baseline=args.baseline,
                        tree=tree,
                    )
                    b.work.mkdir(parents=True, exist_ok=True)
                    sec = SCENARIOS[number](b)
                if tree is not None:
                    sec.baseline(tree)
                sec.seconds = time.perf_counter() - t0
                sections.append(sec)
                print(sec.markdown())
                for g in sec.goals:
                    print(f"goal {g.scenario}: {g.goal}: {g.measured} -> {g.verdict}")
                print(f"(scenario {number}: {sec.seconds:.0f} s)", flush=True)
    load_after = load_average()
    print("\n" + summary_table(sections))
    print(f"\nload average after: {load_after}; total {(time.time() - started) / 60:.1f} min")
    argv = " ".join(
        (["--quick"] if args.quick else []) + (["--only", *map(str, only)] if args.only else [])
    )
    text = document(
        sections,
        quick=args.quick,
        started=started,
        load_before=load_before,
        load_after=load_after,
        argv=argv,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    if args.write_docs:
        earlier = current_block(args.write_docs) if args.only else None
        if earlier is not None:
            # A partial run keeps the other scenarios' sections and goal rows.
            provenance = (
                f"_Measured {now_text(started)}: `python -m devtools.bench {argv}` "
                f"({'quick' if args.quick else 'full'}); load average before {load_before}, "
                f"after {load_after}_"
            )
            text = merge(earlier, text, set(only), provenance)
        replace_section(args.write_docs, "bench", text, before="eval")
        print(f"updated {args.write_docs}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument(
        "--only", nargs="+", type=int, metavar="N", help="run only these scenarios (1-13)"
    )
    parser.add_argument(
        "--real-es",
        nargs="?",
        const="local",
        metavar="URL",
        help="scenario 1 also against a real ES (this URL, or a local ES-compatible server)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="TREE",
        help="another checkout of this project (e.g. `git worktree add /tmp/base HEAD~1`): "
        "scenarios 8-11 run its sidecar beside this tree's, interleaved, as 'before'",
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
        prog="python -m devtools.bench", description=(__doc__ or "").split("\n\n")[0]
    )
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))
