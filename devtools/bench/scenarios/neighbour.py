"""Scenario 9: a noisy neighbour beside four ordinary clients.

The bundled MiniLM, default config (budget, load sharing) but for the score cache (off,
so every search costs the model), in front of the stub ES (passage-like hits, so ES costs
next to nothing and the model is what is shared). Every search asks for a window of
``WINDOW`` (``"rerank": {"window": 20}``), smaller than the default: what is measured is
the share between clients, so a lone client's searches should fit the budget on a small
CPU (scenario 8 measures the default window under load).

Four ordinary clients, each its own address (the fair gate keys clients by address: they
connect from 127.0.0.2 to 127.0.0.5), search at a paced rate: together
``ORDINARY_LOAD`` × the capacity measured at the start of the run (searches/s reranked
whole at concurrency 1), their schedules a quarter of an interval apart. The neighbour
(from 127.0.0.9) sends, back to back on two connections, a ``_msearch`` of 300
sub-searches and a rerank-API request (``/_sidecar/v1/rerank``) of ``api.max_documents``
passages. Each round runs the ordinary clients alone and with the neighbour, in
alternating order; the neighbour's requests in flight when its segment ends are abandoned,
and the next segment waits for the model queue (admission included) to drain.

Goal: the ordinary clients' reranked share with the neighbour ≥ 90% of their share alone.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import Counter
from dataclasses import dataclass

from devtools.bench.results import Goal, Section
from devtools.bench.scenarios.common import QUERIES, search_body
from devtools.bench.scenarios.overload import (
    BUDGET_S,
    MIN_K,
    BreakerWatch,
    Req,
    Segment,
    capacity_of,
    clients_for,
    counted_rerank,
    paced,
    queue_drained,
)
from devtools.bench.servers import BUNDLED_MODEL, Bench
from devtools.fakes import passage
from sidecar.admission.loop import CLIENT_SHARE
from sidecar.config import ApiConfig

ORDINARY = 4
#: The ordinary clients' load, all four together, as a multiple of the capacity.
ORDINARY_LOAD = 0.5
MSEARCH_SUBS = 300
API_DOCS = ApiConfig().max_documents
SHARE_GOAL = 0.90
INDEX = "bench"
WINDOW = 20


def ordinary_source(client: int) -> str:
    return f"127.0.0.{2 + client}"


NEIGHBOUR_SOURCE = "127.0.0.9"


def ordinary_requests(client: int, n: int = 200) -> list[Req]:
    return [
        Req(
            f"/{INDEX}/_search",
            search_body(f"{QUERIES[i % len(QUERIES)]} {client} {i}", window=WINDOW, size=10),
        )
        for i in range(n)
    ]


def msearch_request(subs: int = MSEARCH_SUBS) -> Req:
    lines: list[bytes] = []
    for i in range(subs):
        text = f"{QUERIES[i % len(QUERIES)]} neighbour {i}"
        lines += [b"{}", search_body(text, window=WINDOW, size=10)]
    return Req(
        f"/{INDEX}/_msearch",
        b"\n".join(lines) + b"\n",
        kind="msearch",
        headers=(("Content-Type", "application/x-ndjson"),),
    )


def api_request(docs: int = API_DOCS) -> Req:
    body = {"query": "how to renew a library book", "documents": [passage(i) for i in range(docs)]}
    return Req("/_sidecar/v1/rerank", json.dumps(body).encode(), kind="api")


async def ordinary_segment(url: str, rate: float, duration_s: float) -> list[Segment]:
    each = rate / ORDINARY
    return list(
        await asyncio.gather(
            *(
                paced(
                    url,
                    ordinary_requests(c),
                    clients=clients_for(each),
                    rate=each,
                    duration_s=duration_s,
                    label=f"ordinary-{c}",
                    source=ordinary_source(c),
                    # Spread over the interval: four clients at one rate do not all
                    # send at the same instant, as real clients do not.
                    phase=c / ORDINARY,
                )
                for c in range(ORDINARY)
            )
        )
    )


async def with_neighbour(
    url: str, rate: float, duration_s: float
) -> tuple[list[Segment], Segment, Segment]:
    stop = asyncio.Event()
    timeout = 120.0
    neighbours = [
        asyncio.create_task(
            paced(
                url,
                [req],
                clients=1,
                stop=stop,
                timeout_s=timeout,
                label=label,
                source=NEIGHBOUR_SOURCE,
            )
        )
        for req, label in ((msearch_request(), "msearch"), (api_request(), "api"))
    ]
    ordinary = await ordinary_segment(url, rate, duration_s)
    stop.set()
    msearch, api = await asyncio.gather(*neighbours)
    return ordinary, msearch, api


@dataclass
class Measured:
    warm: Segment
    cap: Segment
    rate: float
    ordinary: dict[str, Segment]
    neighbour: dict[str, Segment]
    watches: dict[str, BreakerWatch]


async def measure(b: Bench, url: str) -> Measured:
    rounds = b.scale(3, 1)
    duration = b.scale(30, 15)
    # Warm the model's kernels through the rerank API first (it does not teach the search
    # path's cost model), so that the first searches of a fresh process are not what sets
    # the budget's estimate; then a few searches teach it.
    await paced(url, [api_request(WINDOW)], clients=1, count=4, label="kernels", timeout_s=60)
    warm = await paced(url, ordinary_requests(9, 5), clients=1, count=5, label="warm")
    cap = await paced(url, ordinary_requests(8, 40), clients=1, count=b.scale(25, 10))
    capacity = capacity_of(cap, WINDOW) or cap.rate
    rate = ORDINARY_LOAD * capacity
    alone = Segment("alone")
    beside = Segment("with the neighbour")
    neighbour = {"msearch": Segment("msearch"), "api": Segment("api")}
    watches = {"alone": BreakerWatch(url), "with": BreakerWatch(url)}
    for r in range(rounds):
        order = ("alone", "with") if r % 2 == 0 else ("with", "alone")
        for which in order:
            watch = BreakerWatch(url)
            async with watch.watching():
                if which == "alone":
                    for seg in await ordinary_segment(url, rate, duration):
                        alone.merge(seg)
                else:
                    ordinary, msearch, api = await with_neighbour(url, rate, duration)
                    for seg in ordinary:
                        beside.merge(seg)
                    neighbour["msearch"].merge(msearch)
                    neighbour["api"].merge(api)
            total = watches[which]
            total.polls += watch.polls
            total.states.update(watch.states)
            total.failed_polls += watch.failed_polls
            total.max_queue_pairs = max(total.max_queue_pairs, watch.max_queue_pairs)
            total.per_pair += watch.per_pair
            await queue_drained(url, timeout_s=60)
    alone.wall_s /= ORDINARY
    beside.wall_s /= ORDINARY
    return Measured(warm, cap, rate, {"alone": alone, "with": beside}, neighbour, watches)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def _headers(seg: Segment, top: int = 4) -> str:
    counts: Counter[str] = Counter()
    for header, n in seg.outcomes().items():
        key = "applied; window=K" if header.startswith("applied; window=") else header
        counts[key] += n
    return ", ".join(f"{k} {v}" for k, v in counts.most_common(top)) or "—"


def run(b: Bench) -> Section:
    sec = Section(
        9,
        f"A noisy neighbour: {MSEARCH_SUBS}-search _msearch and {API_DOCS}-document rerank-API "
        f"requests beside {ORDINARY} ordinary clients (bundled MiniLM, budget "
        f"{BUDGET_S * 1000:.0f} ms, window {WINDOW})",
    )
    es_url, _ = b.start_fake("es-stub-neighbour", "es", "--hits", str(WINDOW))
    sc = b.sidecar("neighbour", es_url, BUNDLED_MODEL, {"rerank": counted_rerank(b)})
    m = asyncio.run(measure(b, sc.url))
    cap, rate, ordinary, neighbour, watches = m.cap, m.rate, m.ordinary, m.neighbour, m.watches
    capacity = capacity_of(cap, WINDOW)
    alone, beside = ordinary["alone"], ordinary["with"]
    lines = [
        f"Capacity {capacity:.2f} searches/s at concurrency 1 (hits reranked per second / "
        f"window {WINDOW}; {cap.n} searches, X-Rerank: {_headers(cap)}); the {ORDINARY} "
        "ordinary clients together at "
        f"{ORDINARY_LOAD}× that: {rate:.2f} searches/s. Sidecar defaults except the score "
        "cache (off); stub ES. Before it: 4 rerank-API calls of "
        f"{WINDOW} documents (kernels warm), then 5 searches: X-Rerank "
        f"{_headers(m.warm)}.",
        "",
        f"| ordinary clients | searches | reranked (any K) | K ≥ {MIN_K} | mean K | p50 ms | "
        "p99 ms | non-2xx | breaker (polls) | X-Rerank |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, seg in (("alone", alone), ("beside the neighbour", beside)):
        watch = watches["alone" if seg is alone else "with"]
        lines.append(
            f"| {name} | {seg.n} | {seg.share():.1%} | {seg.share(MIN_K):.1%} | "
            f"{seg.mean_k:.1f} | {_ms(seg.pct(50))} | {_ms(seg.pct(99))} | {seg.errors} | "
            f"{watch.summary()} | {_headers(seg)} |"
        )
    lines += [
        "",
        "| neighbour's requests | sent | HTTP statuses | p50 ms | max ms | answered with |",
        "|---|---|---|---|---|---|",
    ]
    for name, seg in neighbour.items():
        statuses = dict(Counter(s.status for s in seg.samples))
        answered = [s for s in seg.samples if s.status == 200]
        if name == "msearch":
            what = (
                f"sub-searches reranked: mean {statistics.fmean(s.k for s in answered):.1f} of "
                f"{MSEARCH_SUBS}"
                if answered
                else "—"
            )
        else:
            what = f"{len(answered)} scored answers of {API_DOCS} documents"
        worst = max((s.latency_s for s in seg.samples), default=float("nan"))
        lines.append(
            f"| {name} | {seg.n} answered, {seg.abandoned} abandoned at segment ends | "
            f"{statuses or '—'} | "
            f"{_ms(seg.pct(50))} | {_ms(worst)} | {what} |"
        )
    lines += [
        "",
        f"Model queue (rerank_sidecar_queue_pairs), highest seen: alone "
        f"{watches['alone'].max_queue_pairs:.0f}, with the neighbour "
        f"{watches['with'].max_queue_pairs:.0f} pairs. The model's learned cost "
        f"(rerank_sidecar_model_seconds_per_pair, median (min–max) over the polls): alone "
        f"{watches['alone'].cost()}, with the neighbour {watches['with'].cost()} per pair: "
        "the neighbour's requests also cost CPU outside the model (parsing and writing "
        "300-search answers, in the sidecar and the stub ES), which the model shares; "
        f"the sidecar holds it to {CLIENT_SHARE:.0%} of a core while the ordinary clients "
        "search.",
    ]
    sec.body += lines
    base = alone.share()
    ratio = beside.share() / base if base else float("nan")
    # Nothing reranked alone: the goal cannot be judged (n/a), and the figures say why.
    ok: bool | None = ratio >= SHARE_GOAL if base > 0 else None
    why = (
        f"alone {alone.reranked()}/{alone.n} reranked, beside the neighbour "
        f"{beside.reranked()}/{beside.n}; X-Rerank beside it: {_headers(beside)}; breaker "
        f"beside it: {watches['with'].summary()}; model queue up to "
        f"{watches['with'].max_queue_pairs:.0f} pairs; cost per pair alone "
        f"{watches['alone'].cost()}, beside it {watches['with'].cost()}"
    )
    sec.goals.append(
        Goal(
            "9 noisy neighbour",
            f"ordinary clients' reranked share ≥ {SHARE_GOAL:.0%} of theirs alone",
            f"{ratio:.0%} ({beside.share():.1%} vs {base:.1%} alone)"
            if base
            else f"n/a: nothing reranked alone ({_headers(alone)})",
            ok,
            "" if ok is True else why,
        )
    )
    ok_e = beside.errors == 0 and alone.errors == 0
    sec.goals.append(
        Goal(
            "9 noisy neighbour",
            "ordinary clients' non-2xx = 0",
            f"alone {alone.errors}, beside the neighbour {beside.errors}",
            ok_e,
            "" if ok_e else f"statuses beside: {dict(Counter(s.status for s in beside.samples))}",
        )
    )
    return sec
