"""Scenario 8: closed-loop overload at 1×, 2× and 4× the model's capacity, as served.

The bundled MiniLM with the defaults a user gets (``rerank.budget_ms``, ``rerank.window``,
``rerank.min_window``: read from the config classes, so they follow the code), in front of a
local ES-compatible server (noida-db) loaded with msmarco-dl-5k. The one change to the
defaults: the score cache is off, so a query that comes round again costs the model again.

Each round first measures the **capacity**: searches per second the sidecar reranks one at
a time (concurrency 1, full window). The load levels of that round are multiples of it. A
level is a *paced* closed loop: search ``i`` is due at ``start + i / rate``; ``clients``
workers each take the next due search, wait for its time and send it, and send the next only
once the answer is in. There are enough clients that the rate holds even if every search
took the whole budget (``clients = ceil(rate × (budget + 0.5 s)) + 1``); searches sent late
(every client busy) are counted. Beside each level, ES directly at the same rate and
concurrency: its p99 plus the budget plus 50 ms is the latency goal.

Reported per level: the share of searches reranked (any K, and K ≥ ``min_window``), mean K,
nDCG@10 of the answers under that load (``devtools.eval`` metrics and qrels), p50/p99,
non-2xx, and the breaker's state as ``/_sidecar/metrics`` showed it, polled every 0.2 s.

The load machinery here (:func:`paced`, :class:`Segment`, :class:`BreakerWatch`) is shared
with scenarios 9 (noisy neighbour) and 10 (slow clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from devtools.bench.results import Goal, Section
from devtools.bench.servers import BUNDLED_MODEL, Bench
from devtools.eval.data import EvalSet, load_corpus, read_eval_set
from devtools.eval.ranking import NDCG_K, ndcg_at
from devtools.eval.run import DEFAULT_DATASET, search_body
from es_integration.local_es import LocalES
from sidecar.config import RerankConfig

DEFAULTS = RerankConfig()
BUDGET_S = DEFAULTS.budget_ms / 1000
WINDOW = DEFAULTS.window
MIN_K = DEFAULTS.min_window
LEVELS = (1, 2, 4)
GOAL_LEVEL = 2
RERANKED_GOAL = 0.90
P99_SLACK_MS = 50.0
INDEX = "msmarco-dl-5k"
QUERY_FIELDS = ("title", "text")
#: What a user's page asks for; the sidecar asks ES for the window.
PAGE = 10
POLL_S = 0.2


# --- load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One request the load sends: ``kind`` says how to read its answer."""

    path: str
    body: bytes
    qid: str = ""
    kind: str = "search"  # search | msearch | api | plain
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Sample:
    qid: str
    #: HTTP status; 0 when no answer came (connection error, client timeout).
    status: int
    latency_s: float
    #: Seconds after the segment's start that it was sent.
    sent_s: float = 0.0
    #: Seconds it was sent after its slot in the schedule (every client was busy).
    late_s: float = 0.0
    header: str = ""
    #: Hits reranked (``_rerank.reranked``); for ``_msearch``, sub-searches reranked.
    k: int = 0
    ids: tuple[str, ...] = ()
    #: ``_msearch``: sub-searches in the answer; ``api``: scores returned.
    parts: int = 0


def read_answer(req: Req, status: int, raw: bytes, sample: Sample) -> None:
    """Fill ``sample`` from a 200 answer's body."""
    if status != 200 or req.kind == "plain":
        return
    try:
        doc = json.loads(raw)
    except ValueError:
        return
    if req.kind == "search":
        sample.ids = tuple(str(h.get("_id")) for h in doc.get("hits", {}).get("hits", []))
        sample.k = int((doc.get("_rerank") or {}).get("reranked") or 0)
    elif req.kind == "msearch":
        responses = doc.get("responses") or []
        sample.parts = len(responses)
        sample.k = sum(1 for r in responses if (r.get("_rerank") or {}).get("reranked"))
    elif req.kind == "api":
        sample.parts = len(doc.get("results") or doc.get("scores") or [])


@dataclass
class Segment:
    label: str
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    clients: int = 0
    target_rate: float | None = None
    #: Requests in flight when a ``stop`` ended the load (their answers never counted).
    abandoned: int = 0

    def merge(self, other: Segment) -> None:
        self.samples += other.samples
        self.wall_s += other.wall_s
        self.abandoned += other.abandoned
        self.clients = max(self.clients, other.clients)
        self.target_rate = other.target_rate if self.target_rate is None else self.target_rate

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def rate(self) -> float:
        return self.n / self.wall_s if self.wall_s else 0.0

    def pct(self, q: float) -> float:
        data = sorted(s.latency_s for s in self.samples if s.status)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))]

    @property
    def errors(self) -> int:
        """Answers that were not 2xx, and requests that got no answer at all."""
        return sum(1 for s in self.samples if not 200 <= s.status < 300)

    @property
    def late(self) -> int:
        return sum(1 for s in self.samples if s.late_s > 0.05)

    def reranked(self, min_k: int = 1) -> int:
        return sum(1 for s in self.samples if s.k >= min_k)

    def share(self, min_k: int = 1) -> float:
        return self.reranked(min_k) / self.n if self.n else float("nan")

    @property
    def mean_k(self) -> float:
        ks = [s.k for s in self.samples if s.k > 0]
        return statistics.fmean(ks) if ks else 0.0

    def outcomes(self) -> Counter[str]:
        return Counter(s.header or f"HTTP {s.status}" for s in self.samples)

    def ndcg(self, qrels: dict[str, dict[str, int]]) -> float:
        """nDCG@10 of the answers: per query, the mean over its searches; then the mean
        over the queries."""
        per: dict[str, list[float]] = {}
        for s in self.samples:
            if s.status == 200 and s.qid in qrels:
                per.setdefault(s.qid, []).append(ndcg_at(s.ids, qrels[s.qid], NDCG_K))
        return statistics.fmean(statistics.fmean(v) for v in per.values()) if per else math.nan


async def paced(
    base_url: str,
    requests: Sequence[Req],
    *,
    clients: int,
    rate: float | None = None,
    duration_s: float | None = None,
    count: int | None = None,
    label: str = "",
    timeout_s: float = 60.0,
    stop: asyncio.Event | None = None,
    source: str | None = None,
    phase: float = 0.0,
) -> Segment:
    """Send ``requests`` round-robin over ``clients`` connections, each waiting for its
    answer before it sends again; with ``rate``, request ``i`` is not sent before
    ``start + i / rate``. Stops after ``count`` requests, once ``duration_s`` has passed,
    or when ``stop`` is set (then what is in flight is abandoned). ``source``: the local
    address to connect from (a loopback address of its own makes a distinct client).
    ``phase`` (0–1): with ``rate``, the schedule starts that share of one interval late,
    so that clients at the same rate do not all send at the same instants."""
    if count is None and duration_s is None and stop is None:
        raise ValueError("paced() needs a count, a duration or a stop event")
    seg = Segment(label, clients=clients, target_rate=rate)
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(
        limit=clients, force_close=False, local_addr=None if source is None else (source, 0)
    )
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = loop.time()

        async def worker() -> None:
            for i in counter:
                if count is not None and i >= count:
                    return
                due = start + (i + phase) / rate if rate else loop.time()
                if duration_s is not None and due - start >= duration_s:
                    return
                if stop is not None and stop.is_set():
                    return
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                req = requests[i % len(requests)]
                headers = {"Content-Type": "application/json", **dict(req.headers)}
                t0 = loop.time()
                sample = Sample(req.qid, 0, 0.0, sent_s=t0 - start, late_s=max(0.0, t0 - due))
                try:
                    async with session.request(
                        req.method, base_url + req.path, data=req.body, headers=headers
                    ) as resp:
                        raw = await resp.read()
                        sample.status = resp.status
                        sample.header = resp.headers.get("X-Rerank", "")
                except (aiohttp.ClientError, TimeoutError):
                    raw = b""
                except asyncio.CancelledError:
                    seg.abandoned += 1
                    raise
                sample.latency_s = loop.time() - t0
                read_answer(req, sample.status, raw, sample)
                seg.samples.append(sample)

        tasks = [asyncio.create_task(worker()) for _ in range(clients)]
        if stop is None:
            await asyncio.gather(*tasks)
        else:
            halt = stop

            async def stopped() -> None:
                await halt.wait()

            async def finished() -> None:
                await asyncio.gather(*tasks, return_exceptions=True)

            ends = [asyncio.create_task(stopped()), asyncio.create_task(finished())]
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            for t in [*ends, *tasks]:
                t.cancel()
            await asyncio.gather(*ends, *tasks, return_exceptions=True)
        seg.wall_s = loop.time() - start
    return seg


def clients_for(rate: float, budget_s: float = BUDGET_S) -> int:
    """Enough clients that ``rate`` holds even if every search takes the whole budget."""
    return math.ceil(rate * (budget_s + 0.5)) + 1


# --- the sidecar's own figures -------------------------------------------------------------


def metric_values(text: str, name: str) -> dict[str, float]:
    """``name``'s samples in a Prometheus text page, keyed by their label text."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            labels = key[len(name) :].strip("{}")
            with contextlib.suppress(ValueError):
                out[labels] = float(value)
    return out


@dataclass
class BreakerWatch:
    """Polls ``/_sidecar/metrics`` while a load runs: the breaker state and the model
    queue, as the sidecar reports them."""

    url: str
    polls: int = 0
    states: Counter[str] = field(default_factory=Counter)
    failed_polls: int = 0
    max_queue_pairs: float = 0.0
    #: The model's learned cost (``rerank_sidecar_model_seconds_per_pair``) at each poll.
    per_pair: list[float] = field(default_factory=list)

    @property
    def opened(self) -> bool:
        return self.states["open"] > 0

    def summary(self) -> str:
        if not self.polls:
            return "not polled"
        seen = ", ".join(f"{k} {v}" for k, v in sorted(self.states.items()))
        failed = f"; {self.failed_polls} polls unanswered" if self.failed_polls else ""
        return f"{seen} of {self.polls} polls{failed}"

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(self.url + "/_sidecar/metrics") as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            self.failed_polls += 1
            return
        self.polls += 1
        states = metric_values(text, "rerank_sidecar_breaker_state")
        for labels, value in states.items():
            if value >= 1:
                self.states[labels.split("=", 1)[-1].strip('"')] += 1
        queue = metric_values(text, "rerank_sidecar_queue_pairs")
        self.max_queue_pairs = max(self.max_queue_pairs, *queue.values(), 0.0)
        self.per_pair += metric_values(text, "rerank_sidecar_model_seconds_per_pair").values()

    def cost(self) -> str:
        """The learned cost over the polls, in ms per pair: median (min–max)."""
        if not self.per_pair:
            return "—"
        ms = sorted(v * 1000 for v in self.per_pair)
        return f"{statistics.median(ms):.0f} ({ms[0]:.0f}–{ms[-1]:.0f}) ms"

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[BreakerWatch]:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def loop() -> None:
                while True:
                    await self.poll_once(session)
                    await asyncio.sleep(POLL_S)

            task = asyncio.create_task(loop())
            try:
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await self.poll_once(session)


async def queue_drained(url: str, timeout_s: float = 30.0) -> bool:
    """Wait until the sidecar's model queue is empty (so the next segment starts clean)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url + "/_sidecar/metrics") as resp:
                    queue = metric_values(await resp.text(), "rerank_sidecar_queue_pairs")
                if not any(queue.values()):
                    return True
            await asyncio.sleep(0.2)
    return False


# --- the scenario --------------------------------------------------------------------------


def search_requests(data: EvalSet, index: str = INDEX) -> list[Req]:
    return [
        Req(
            f"/{index}/_search",
            json.dumps(search_body(text, QUERY_FIELDS, PAGE, None)).encode(),
            qid,
        )
        for qid, text in data.queries.items()
    ]


@dataclass
class Level:
    multiple: int
    sidecar: Segment
    es: Segment
    watch: BreakerWatch


def capacity_of(seg: Segment, window: int = WINDOW) -> float:
    """Whole windows per second the model scored, one search at a time: the hits reranked
    per second over the window (searches/s where every search is reranked whole). 0 when
    nothing was reranked."""
    return sum(s.k for s in seg.samples) / window / seg.wall_s if seg.wall_s else 0.0


async def measure(
    b: Bench, sidecar_url: str, es_url: str, reqs: list[Req]
) -> tuple[list[Segment], list[Level], Segment, Segment]:
    rounds = b.scale(2, 1)
    level_s = b.scale(40, 12)
    es_s = b.scale(8, 4)
    cap_n = b.scale(25, 10)
    # Warm the cost model (the engine learns seconds per pair from the scorer's answers).
    await paced(sidecar_url, reqs[-5:], clients=1, count=5, label="warm")
    capacities: list[Segment] = []
    levels: dict[int, Level] = {}
    bm25 = Segment("ES directly, concurrency 1")
    offset = 0
    for _ in range(rounds):
        cap = await paced(sidecar_url, reqs[offset:], clients=1, count=cap_n, label="capacity")
        offset = (offset + cap_n) % len(reqs)
        capacities.append(cap)
        base_rate = capacity_of(cap) or cap.rate
        bm25.merge(await paced(es_url, reqs, clients=1, count=len(reqs), label="bm25"))
        for m in LEVELS:
            rate = m * base_rate
            clients = clients_for(rate)
            es = await paced(es_url, reqs, clients=clients, rate=rate, duration_s=es_s)
            watch = BreakerWatch(sidecar_url)
            async with watch.watching():
                sc = await paced(sidecar_url, reqs, clients=clients, rate=rate, duration_s=level_s)
            await queue_drained(sidecar_url)
            if m in levels:
                lv = levels[m]
                lv.sidecar.merge(sc)
                lv.es.merge(es)
                lv.watch.polls += watch.polls
                lv.watch.states.update(watch.states)
                lv.watch.failed_polls += watch.failed_polls
                lv.watch.max_queue_pairs = max(lv.watch.max_queue_pairs, watch.max_queue_pairs)
            else:
                levels[m] = Level(m, sc, es, watch)
    # Does reranking come back once the load is gone?
    after = await paced(sidecar_url, reqs, clients=1, count=cap_n, label="after")
    return capacities, [levels[m] for m in LEVELS], bm25, after


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def _outcomes(seg: Segment, top: int = 5) -> str:
    counts: Counter[str] = Counter()
    for header, n in seg.outcomes().items():
        key = "applied; window=K" if header.startswith("applied; window=") else header
        counts[key] += n
    return ", ".join(f"{k} {v}" for k, v in counts.most_common(top))


def level_table(
    levels: list[Level], capacity: float, qrels: dict[str, dict[str, int]]
) -> list[str]:
    lines = [
        "| load | target /s | clients | searches | achieved /s (× capacity) | sent late | "
        f"reranked (any K) | K ≥ {MIN_K} | mean K | nDCG@10 | p50 ms | p99 ms | "
        "ES p50 / p99 ms | p99 limit ms | non-2xx | breaker (polls) | X-Rerank |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        sc, es = lv.sidecar, lv.es
        limit = es.pct(99) + BUDGET_S + P99_SLACK_MS / 1000
        lines.append(
            f"| {lv.multiple}× | {sc.target_rate or 0:.2f} | {sc.clients} | {sc.n} | "
            f"{sc.rate:.2f} ({sc.rate / capacity:.2f}×) | {sc.late} | {sc.share():.1%} | "
            f"{sc.share(MIN_K):.1%} | {sc.mean_k:.1f} | {sc.ndcg(qrels):.4f} | "
            f"{_ms(sc.pct(50))} | {_ms(sc.pct(99))} | {_ms(es.pct(50))} / {_ms(es.pct(99))} | "
            f"{_ms(limit)} | {sc.errors} | {lv.watch.summary()} | {_outcomes(sc)} |"
        )
    return lines


def k_histogram(seg: Segment) -> str:
    bins = [(0, 0), (1, MIN_K - 1), (MIN_K, 19), (20, 29), (30, 39), (40, WINDOW - 1)]
    bins.append((WINDOW, 10**6))
    parts = []
    for lo, hi in bins:
        n = sum(1 for s in seg.samples if lo <= s.k <= hi)
        name = "0" if hi == 0 else f"≥{lo}" if hi >= 10**6 else f"{lo}-{hi}"
        parts.append(f"K {name}: {n}")
    return ", ".join(parts)


def counted_rerank(b: Bench) -> dict[str, Any]:
    """The ``rerank`` settings of a sidecar whose answers are counted: the score cache off,
    and the annotations that say how many hits each search had reranked (``Sample.k``).
    They are opt-in since ``rerank.annotate`` came; a baseline tree from before it always
    adds them (and refuses the key)."""
    rerank: dict[str, Any] = {"cache": {"enabled": False}}
    if b.tree is None:
        rerank["annotate"] = True
    return rerank


def run(b: Bench) -> Section:
    sec = Section(
        8,
        f"Closed-loop overload at {', '.join(f'{m}×' for m in LEVELS)} the model's capacity "
        f"(bundled MiniLM, as served: budget {DEFAULTS.budget_ms:.0f} ms, window {WINDOW})",
    )
    data = read_eval_set(DEFAULT_DATASET)
    es = LocalES.start(data_dir=b.work / "es-overload")
    b.stack.callback(es.close)
    load_corpus(es.url, data, INDEX, progress=False)
    sc = b.sidecar("overload", es.url, BUNDLED_MODEL, {"rerank": counted_rerank(b)})
    reqs = search_requests(data)
    capacities, levels, bm25, after = asyncio.run(measure(b, sc.url, es.url, reqs))
    caps = [capacity_of(c) or c.rate for c in capacities]
    capacity = statistics.fmean(caps)
    cap_all = Segment("capacity")
    for c in capacities:
        cap_all.merge(c)
    qrels = data.qrels
    sec.body += [
        f"{len(capacities)} round(s). Each round: the capacity (concurrency 1, "
        f"{capacities[0].n} searches), BM25 (every query straight to ES), then for each level "
        "ES directly and the sidecar at that rate, interleaved. Dataset "
        f"{data.name} ({len(data.queries)} judged queries, cycled), `multi_match` on "
        f"{', '.join(QUERY_FIELDS)}, size {PAGE}; sidecar defaults except the score cache "
        "(off). Levels are multiples of the capacity measured at the start of their round.",
        "",
        f"Capacity: **{capacity:.2f} searches/s** at concurrency 1 (hits reranked per second "
        f"/ window {WINDOW}; per round: {', '.join(f'{c:.2f}' for c in caps)}); "
        f"{cap_all.n} searches at {cap_all.rate:.2f}/s, {cap_all.reranked(WINDOW)} with the "
        f"whole window, {cap_all.reranked()} reranked at all (mean K {cap_all.mean_k:.1f}); "
        f"p50 {_ms(cap_all.pct(50))} ms, p99 {_ms(cap_all.pct(99))} ms; X-Rerank: "
        f"{_outcomes(cap_all)}."
        + (
            ""
            if all(capacity_of(c) for c in capacities)
            else " **Some round reranked nothing at concurrency 1: its levels are multiples "
            "of the rate at which the sidecar answered (in ES order), not of a capacity.**"
        ),
        "",
        f"nDCG@10: BM25 (ES directly) **{bm25.ndcg(qrels):.4f}**; the whole window at "
        f"concurrency 1 **{cap_all.ndcg(qrels):.4f}**.",
        "",
        *level_table(levels, capacity, qrels),
        "",
        "K per level: " + "; ".join(f"{lv.multiple}×: {k_histogram(lv.sidecar)}" for lv in levels),
        "",
        f"After the last level, at concurrency 1 again: {after.reranked()}/{after.n} searches "
        f"reranked (mean K {after.mean_k:.1f}), X-Rerank: {_outcomes(after)}; the capacity "
        f"segments before the load: {cap_all.reranked()}/{cap_all.n}.",
        "",
        f"'sent late': searches sent more than 50 ms after their slot (every client busy). "
        "'ES p50 / p99': the client's own search sent straight to ES at the same rate and "
        f"concurrency (the sidecar asks ES for the window, {WINDOW} hits with their text). "
        f"'p99 limit': ES's p99 + the budget ({DEFAULTS.budget_ms:.0f} ms) + "
        f"{P99_SLACK_MS:.0f} ms. 'breaker': states seen in /_sidecar/metrics, polled every "
        f"{POLL_S} s during the level. nDCG@10: per query the mean over its searches, then "
        "the mean over the queries (devtools.eval's metric and qrels).",
    ]
    sec.goals += goals(levels, capacity, bm25.ndcg(qrels), cap_all.ndcg(qrels), qrels)
    sec.goals.append(
        Goal(
            "8 overload, afterwards",
            "reranking resumes at concurrency 1 (information)",
            f"{after.reranked()}/{after.n} reranked after the load vs {cap_all.reranked()}/"
            f"{cap_all.n} before it",
            None,
        )
    )
    return sec


def goals(
    levels: list[Level],
    capacity: float,
    bm25_ndcg: float,
    whole_ndcg: float,
    qrels: dict[str, dict[str, int]],
) -> list[Goal]:
    by = {lv.multiple: lv for lv in levels}
    out: list[Goal] = []
    lv = by.get(GOAL_LEVEL)
    if lv is not None:
        sc, es = lv.sidecar, lv.es
        figures = (
            f"{sc.rate:.2f} searches/s = {sc.rate / capacity:.2f}× capacity, "
            f"{sc.clients} clients, {sc.late} sent late; X-Rerank: {_outcomes(sc)}; "
            f"{k_histogram(sc)}"
        )
        share = sc.share(MIN_K)
        ok = share >= RERANKED_GOAL
        out.append(
            Goal(
                f"8 overload {GOAL_LEVEL}×",
                f"≥ {RERANKED_GOAL:.0%} of searches reranked with K ≥ {MIN_K}",
                f"{share:.1%} (any K {sc.share():.1%}, mean K {sc.mean_k:.1f})",
                ok,
                "" if ok else figures,
            )
        )
        limit = es.pct(99) + BUDGET_S + P99_SLACK_MS / 1000
        ok = sc.pct(99) <= limit
        out.append(
            Goal(
                f"8 overload {GOAL_LEVEL}×",
                f"p99 ≤ ES p99 + budget + {P99_SLACK_MS:.0f} ms",
                f"{_ms(sc.pct(99))} ms (limit {_ms(limit)} ms; p50 {_ms(sc.pct(50))} ms; ES "
                f"p99 {_ms(es.pct(99))} ms)",
                ok,
                "" if ok else figures,
            )
        )
        out.append(
            Goal(
                f"8 overload {GOAL_LEVEL}×",
                "nDCG@10 under load (information)",
                f"{sc.ndcg(qrels):.4f} (BM25 {bm25_ndcg:.4f}, whole window {whole_ndcg:.4f})",
                None,
            )
        )
    opened = [f"{x.multiple}×" for x in levels if x.watch.opened]
    unpolled = [f"{x.multiple}×" for x in levels if not x.watch.polls]
    ok_b = not opened and not unpolled
    out.append(
        Goal(
            f"8 overload {GOAL_LEVEL}× (and every level)",
            "breaker never open",
            "; ".join(f"{x.multiple}×: {x.watch.summary()}" for x in levels),
            ok_b,
            "" if ok_b else f"open at {', '.join(opened) or '—'}; unpolled {unpolled or '—'}",
        )
    )
    errors = {f"{x.multiple}×": x.sidecar.errors for x in levels}
    ok_e = not any(errors.values())
    out.append(
        Goal(
            "8 overload, every level",
            "non-2xx = 0",
            ", ".join(f"{k}: {v}" for k, v in errors.items()),
            ok_e,
            ""
            if ok_e
            else "; ".join(
                f"{x.multiple}×: {dict(Counter(s.status for s in x.sidecar.samples))}"
                for x in levels
            ),
        )
    )
    return out
