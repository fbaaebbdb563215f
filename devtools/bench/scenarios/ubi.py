"""Scenario 12: UBI — how many interleaved queries a verdict needs, and what logging costs.

The bundled MiniLM in front of a local ES-compatible server (noida-db) loaded with
msmarco-dl-5k, ``rerank.window`` 20 (the window the judged set's reference figures use),
the default budget, the score cache off (43 queries come round again and again here; a
cached score would make every page reranked, which is not what a first search gets).

**Part A, queries needed for a verdict (as served).** One sidecar with ``ubi.enabled`` and
``rollout.default: interleave``. Simulated users, a few at a time: each search is one of the
judged queries (drawn with a seeded RNG), a fresh ``ext.ubi.query_id`` (so the team-draft
coins differ), size 10. The answer's hits are read in order by a **cascade click model**:
the user examines position 1, 2, ... and clicks a hit with P(click | grade) (its qrels
grade, unjudged = 0); after a click they stop with P(stop | grade), else read on, to the
end of the page. The clicks are POSTed to ``/_sidecar/ubi/events`` as a frontend would
(``action_name: click``, the query_id, the hit's ``_id``, its ordinal). Then the real
report endpoint (``GET /_sidecar/ubi/report``) is read, and checked against the same
arithmetic (:mod:`sidecar.ubi.report`) over (a) the log as ES holds it, read with the
report's own reader, and (b) the interleaved lists the users received (``_rerank.team``).

The pages that came back interleaved are then **resampled** (seeded): each of
``SEQUENCES`` sequences draws interleaved queries with replacement from them, clicks
simulated afresh for every draw, credited with :class:`sidecar.ubi.report.Tally` and
tested with :func:`sidecar.ubi.stats.sign_test` after every query. *Queries needed* is,
per sequence, the number of interleaved queries (the report's ``interleaving.queries``:
clicked or not) after which the sign test first gives p < 0.05 with the reranker ahead;
reported as the median and 80th percentile over the sequences (a sequence that never gets
there within ``MAX_QUERIES`` counts as more than that), with the smallest n at which 80% of
sequences have got there, and the n from which the verdict *stays* significant to the end.
Both for the click model of the served run and for a noisier one. For context, nDCG@10 of
ES's order and of the reranked order on the judged queries.

**Part B, what logging costs (one run, interleaved).** Two sidecars on the same ES,
identical but for ``ubi.enabled`` (false, true), the same search bodies (without
``ext.ubi``: the enabled one makes the query_id, as it does for any client), closed-loop
clients (:mod:`devtools.bench.loadgen`) in interleaved rounds. First with the rollout at
``off`` (pure pass-through: the logging's own cost, no model noise), then, after a rules
reload (admin API), at ``on`` (reranked). Per contender p50/p99, searches/s and the sidecar
process's CPU seconds per search (``/proc``, before and after each round); the ratios
enabled/disabled; and what the log wrote and dropped (``/_sidecar/ready``'s ``ubi``), against
the searches sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import math
import random
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from devtools.bench.contenders import LoadTarget, latency_table, measured_round
from devtools.bench.loadgen import run_load
from devtools.bench.results import Goal, Section
from devtools.bench.servers import BUNDLED_MODEL, Bench
from devtools.eval.data import EvalSet, load_corpus, read_eval_set
from devtools.eval.ranking import NDCG_K, ndcg_at
from devtools.eval.run import DEFAULT_DATASET
from devtools.procfs import cpu_seconds
from es_integration.local_es import LocalES
from es_integration.sidecar_proc import SidecarProcess
from sidecar.config import RerankConfig
from sidecar.rerank.interleave import ES, RERANK
from sidecar.ubi import reader
from sidecar.ubi.report import Click, Served, Tally, report
from sidecar.ubi.schema import utc
from sidecar.ubi.stats import sign_test

DEFAULTS = RerankConfig()
INDEX = "msmarco-dl-5k"
QUERY_FIELDS = ("title", "text")
WINDOW = 20
PAGE = 10
SEED = 12
ALPHA = 0.05
TOKEN = "bench-12-admin"
#: The enabled contender of part B logs here (part A uses the default indices).
COST_INDEX = "ubi_queries_cost"
MODE_HEADER = "X-Rerank-Mode"
#: The share of sequences that "queries needed" asks to have reached significance.
POWER = 0.8
#: Sequences drawn, and the longest one, in interleaved queries.
SEQUENCES = (500, 200)
MAX_QUERIES = (2000, 1000)
#: Points at which the share of sequences already significant is shown.
CHECKPOINTS = (25, 50, 100, 200, 400, 800, 1600)


@dataclass(frozen=True)
class ClickModel:
    """A cascade click model over qrels grades 0..3 (unjudged = 0)."""

    name: str
    click: tuple[float, float, float, float]
    stop: tuple[float, float, float, float]
    why: str

    def clicks(self, grades: Sequence[int], rng: random.Random) -> list[int]:
        """Positions (0-based) clicked on a page whose hits have ``grades``, in order."""
        out: list[int] = []
        for pos, grade in enumerate(grades):
            g = min(max(grade, 0), 3)
            if rng.random() < self.click[g]:
                out.append(pos)
                if rng.random() < self.stop[g]:
                    break
        return out

    def text(self) -> str:
        c = "/".join(f"{p:g}" for p in self.click)
        s = "/".join(f"{p:g}" for p in self.stop)
        return f"P(click | grade 0..3) {c}; P(stop after a click | grade 0..3) {s}"


#: The served run's users: close to the "navigational" cascade users of the online
#: learning-to-rank literature (Hofmann et al. 2011; Chuklin et al. 2015), mapped onto
#: TREC DL's grades 0..3: a non-relevant passage is almost never clicked (a snippet gives
#: it away), a perfectly relevant one nearly always; a user who found what they wanted
#: stops more often than one who clicked a partly relevant passage.
NAVIGATIONAL = ClickModel(
    "navigational",
    (0.05, 0.3, 0.6, 0.9),
    (0.2, 0.4, 0.6, 0.8),
    "snippets tell relevance well; a good answer ends the search",
)
#: The same stopping, clicks that follow the grade only loosely (a flatter slope, and one
#: click in five on a non-relevant passage): how much more traffic noisier users need.
NOISY = ClickModel(
    "noisy",
    (0.2, 0.35, 0.5, 0.65),
    (0.2, 0.4, 0.6, 0.8),
    "clicks follow the grade loosely; one non-relevant passage in five is clicked",
)
CLICK_MODELS = (NAVIGATIONAL, NOISY)


# --- part A: interleaved searches served, clicked and reported -----------------------------


@dataclass
class Page:
    """One search as served to a simulated user, and what they clicked."""

    n: int
    qid: str
    query_id: str
    status: int = 0
    header: str = ""
    latency_s: float = 0.0
    ids: list[str] = field(default_factory=list)
    #: The team of each hit (``_rerank.team``); None when the page kept ES's order.
    teams: list[str] | None = None
    k: int = 0
    clicked: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    events_status: int = 0

    @property
    def interleaved(self) -> bool:
        return self.teams is not None and len(self.teams) == len(self.ids) > 0

    def served(self) -> Served:
        """The page as the report folds it, from the answer the user got."""
        s = Served(self.query_id, "interleave")
        s.hits = {i + 1: h for i, h in enumerate(self.ids)}
        s.teams = {i + 1: t for i, t in enumerate(self.teams or [])}
        s.compared = self.interleaved
        return s


def search_body(text: str, query_id: str | None = None) -> dict[str, Any]:
    """A frontend's search: the query on title and text, a page of 10 with its _source."""
    body: dict[str, Any] = {
        "query": {"multi_match": {"query": text, "fields": list(QUERY_FIELDS)}},
        "size": PAGE,
    }
    if query_id is not None:
        body["ext"] = {"ubi": {"query_id": query_id}}
    return body


def click_events(page: Page, at: datetime) -> list[dict[str, Any]]:
    """The UBI click events of a page's clicks, a millisecond apart in the order made."""
    return [
        {
            "action_name": "click",
            "query_id": page.query_id,
            "timestamp": utc(at + timedelta(milliseconds=i)),
            "event_attributes": {
                "object": {"object_id": page.ids[pos]},
                "position": {"ordinal": pos + 1},
            },
        }
        for i, pos in enumerate(page.clicked)
    ]


async def serve_users(
    url: str, data: EvalSet, searches: int, users: int, model: ClickModel
) -> tuple[list[Page], float]:
    """``searches`` searches by ``users`` simulated users at a time (closed loop), each
    clicked by ``model`` and its clicks sent as events; the pages and the wall time."""
    rng = random.Random(SEED)
    qids = sorted(data.queries)
    pages = [
        Page(n, rng.choice(qids), f"bench12-{n:05d}-{rng.getrandbits(48):012x}")
        for n in range(searches)
    ]
    todo = iter(pages)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def user() -> None:
            for page in todo:
                body = json.dumps(search_body(data.queries[page.qid], page.query_id))
                t0 = time.perf_counter()
                async with session.post(
                    f"{url}/{INDEX}/_search", data=body, headers=headers
                ) as resp:
                    raw = await resp.read()
                    page.status = resp.status
                    page.header = resp.headers.get("X-Rerank", "")
                page.latency_s = time.perf_counter() - t0
                if page.status != 200:
                    continue
                answer = json.loads(raw)
                hits = answer.get("hits", {}).get("hits", [])
                page.ids = [str(h.get("_id")) for h in hits]
                teams = [(h.get("_rerank") or {}).get("team") for h in hits]
                if hits and all(t in (RERANK, ES) for t in teams):
                    page.teams = [str(t) for t in teams]
                page.k = int((answer.get("_rerank") or {}).get("reranked") or 0)
                qrels = data.qrels[page.qid]
                clicks_rng = random.Random(f"{SEED}-served-{page.n}")
                page.clicked = model.clicks([qrels.get(i, 0) for i in page.ids], clicks_rng)
                page.events = click_events(page, datetime.now(UTC))
                if page.events:
                    async with session.post(
                        f"{url}/_sidecar/ubi/events", data=json.dumps(page.events), headers=headers
                    ) as resp:
                        await resp.read()
                        page.events_status = resp.status

        t0 = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(users)))
        wall = time.perf_counter() - t0
    return pages, wall


def _get(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def _post(url: str, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    data = json.dumps(body if body is not None else {}).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def log_state(sc: SidecarProcess) -> dict[str, Any]:
    state: dict[str, Any] = _get(f"{sc.url}/_sidecar/ready").get("ubi") or {}
    return state


def flushed(sc: SidecarProcess, es_url: str, indices: Sequence[str], timeout_s: float = 60) -> None:
    """Until the sidecar's UBI queue is empty, then refresh ``indices`` so a search (the
    report's) sees every document written."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and log_state(sc).get("queued_bytes", 1):
        time.sleep(0.2)
    for index in indices:
        _post(f"{es_url}/{index}/_refresh")


async def read_log(es_url: str, index: str, since: str) -> list[Served]:
    """The period's queries as the report reads them (:func:`sidecar.ubi.reader.queries`)."""
    async with aiohttp.ClientSession() as session:

        async def send(
            method: str, path: str, body: bytes | None, content_type: str
        ) -> tuple[int, bytes]:
            async with session.request(
                method, es_url + path, data=body, headers={"Content-Type": content_type}
            ) as resp:
                return resp.status, await resp.read()

        return [s async for s in reader.queries(send, index, reader.period(since, None))]


async def rankings(
    url: str, data: EvalSet, headers: dict[str, str], limit: int | None = None
) -> dict[str, Any]:
    """Every judged query (or the first ``limit``) once, one at a time: (ids, X-Rerank, K)
    per query id."""
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for qid, text in list(data.queries.items())[:limit]:
            body = json.dumps(search_body(text))
            async with session.post(
                f"{url}/{INDEX}/_search",
                data=body,
                headers={"Content-Type": "application/json", **headers},
            ) as resp:
                answer = json.loads(await resp.read())
                header = resp.headers.get("X-Rerank", "")
            hits = answer.get("hits", {}).get("hits", [])
            k = int((answer.get("_rerank") or {}).get("reranked") or 0)
            out[qid] = ([str(h.get("_id")) for h in hits], header, k)
    return out


# --- part A: resampling ---------------------------------------------------------------------


@dataclass
class Needed:
    """Queries needed for a verdict under one click model, over the resampled sequences."""

    model: ClickModel
    sequences: int
    max_queries: int
    #: Per sequence: the first n with p < ALPHA and the reranker ahead (None: never).
    first: list[int | None] = field(default_factory=list)
    #: Per sequence: the n from which it stays so to the end (None: not significant at the end).
    stays: list[int | None] = field(default_factory=list)
    #: Over all draws: queries with a click, decisive queries, the reranker's wins.
    clicked: int = 0
    decisive: int = 0
    rerank_wins: int = 0
    draws: int = 0

    def quantile(self, values: Sequence[int | None], q: float) -> str:
        """The q-quantile, a sequence that never got there counting as more than the
        longest; '> max' when the quantile falls among those."""
        ranked = sorted(math.inf if v is None else float(v) for v in values)
        if not ranked:
            return "—"
        x = ranked[min(len(ranked) - 1, math.ceil(q * len(ranked)) - 1)]
        return f"> {self.max_queries}" if math.isinf(x) else f"{x:.0f}"

    def reached_by(self, n: int) -> float:
        return sum(1 for f in self.first if f is not None and f <= n) / len(self.first)

    def power_n(self, share: float = POWER) -> str:
        """The smallest n at which ``share`` of the sequences have reached significance."""
        return self.quantile(self.first, share)


class Critical:
    """The fewest reranker wins that make ``d`` decisive queries significant: p < ALPHA by
    :func:`sign_test` with the reranker ahead (``d + 1`` when no split of ``d`` is). The
    sign test's p falls as the leader's wins rise and rises with each further loss, so the
    threshold never falls as ``d`` grows: each is found from the last one with a few calls
    of the report's own test, not one call per (wins, losses) a sequence passes through."""

    def __init__(self) -> None:
        self._wins = [1]  # d = 0: nothing is significant

    def __call__(self, d: int) -> int:
        while len(self._wins) <= d:
            n = len(self._wins)
            w = max(self._wins[-1], n // 2 + 1)
            while w <= n and sign_test(w, n - w) >= ALPHA:
                w += 1
            self._wins.append(w)
        return self._wins[d]


def resample(
    lists: Sequence[tuple[Served, dict[str, int]]],
    model: ClickModel,
    sequences: int,
    max_queries: int,
) -> Needed:
    """``sequences`` sequences of ``max_queries`` interleaved queries drawn with replacement
    from ``lists`` (each a page as served and its query's qrels), each draw clicked afresh
    by ``model``; credited by the report's Tally, tested by its sign test.

    A report's tally is the sum of its queries' tallies, so each query's is computed once
    per (page, clicks) by :class:`Tally` itself and added up along the sequence."""
    rng = random.Random(f"{SEED}-resample-{model.name}")
    out = Needed(model, sequences, max_queries)
    critical = Critical()
    credited: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}
    grades = [[qrels.get(s.hits[p], 0) for p in sorted(s.hits)] for s, qrels in lists]
    for _ in range(sequences):
        wins = losses = 0
        first: int | None = None
        last_not = 0
        for n in range(1, max_queries + 1):
            i = rng.randrange(len(lists))
            clicked = tuple(model.clicks(grades[i], rng))
            one = credited.get((i, clicked))
            if one is None:
                served, tally = lists[i][0], Tally()
                tally.add(
                    served, [Click(served.hits[p + 1], f"{k:03d}") for k, p in enumerate(clicked)]
                )
                one = credited[(i, clicked)] = (tally.rerank_wins, tally.es_wins)
            wins, losses = wins + one[0], losses + one[1]
            significant = wins >= critical(wins + losses)
            if significant and first is None:
                first = n
            if not significant:
                last_not = n
            out.clicked += bool(clicked)
            out.decisive += bool(one[0] or one[1])
            out.rerank_wins += one[0]
        out.draws += max_queries
        out.first.append(first)
        out.stays.append(None if last_not == max_queries else last_not + 1)
    return out


# --- part B: the cost of logging ------------------------------------------------------------


@dataclass
class Contender:
    """One sidecar of part B: its load figures (:class:`LoadTarget`), and ES's CPU time
    during its rounds."""

    target: LoadTarget
    sidecar: SidecarProcess
    es_cpu_s: float = 0.0
    sent: int = 0

    @property
    def es_us(self) -> float:
        return self.es_cpu_s / max(1, self.target.requests) * 1e6


@dataclass
class CostPhase:
    mode: str
    contenders: list[Contender]
    rounds: int

    @property
    def targets(self) -> list[LoadTarget]:
        return [c.target for c in self.contenders]


async def queue_empty(session: aiohttp.ClientSession, url: str, timeout_s: float = 60) -> None:
    """Until the sidecar's UBI queue is empty: everything queued is written (a batch leaves
    the queue once its ``_bulk`` is answered). At once for a sidecar without UBI."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with session.get(url + "/_sidecar/ready") as resp:
            state = (await resp.json()).get("ubi") or {}
        if not state.get("queued_bytes"):
            return
        await asyncio.sleep(0.05)


async def cost_rounds(
    contenders: list[Contender], es_pid: int | None, rounds: int, warm: int
) -> None:
    """Like :func:`devtools.bench.contenders.interleaved`, and each contender's round lasts
    until its log is written: the sidecar's CPU for the writes, and ES's for taking them,
    are charged to the searches that caused them, not to the next contender's round."""
    async with aiohttp.ClientSession() as session:
        for c in contenders:
            t = c.target
            await run_load("warm", t.url, t.bodies(-1), concurrency=t.concurrency, requests=warm)
            c.sent += warm
            await queue_empty(session, c.sidecar.url)
        for r in range(rounds):
            for c in contenders:
                es0 = cpu_seconds(es_pid)
                res = await measured_round(
                    c.target, r, settle=functools.partial(queue_empty, session, c.sidecar.url)
                )
                c.es_cpu_s += (cpu_seconds(es_pid) or 0.0) - (es0 or 0.0)
                c.sent += sum(res.statuses.values()) + res.errors


def _start_pair(
    b: Bench, es_url: str, rules: Path, config: dict[str, Any]
) -> tuple[SidecarProcess, SidecarProcess]:
    """The two contenders, started side by side (their model loads overlap)."""
    ubi = {"queries_index": COST_INDEX, "events_index": "ubi_events_cost"}
    configs = {
        name: config
        | {
            "rollout": {"rules_file": str(rules), "trusted_clients": ["127.0.0.1/32"]},
            "ubi": ubi | {"enabled": enabled},
        }
        for name, enabled in (("ubi-disabled", False), ("ubi-enabled", True))
    }
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(b.sidecar, name, es_url, BUNDLED_MODEL, cfg)
            for name, cfg in configs.items()
        }
        return futures["ubi-disabled"].result(), futures["ubi-enabled"].result()


def write_rules(path: Path, mode: str) -> None:
    path.write_text(f"default: {mode}\nrules: []\n", encoding="utf-8")


@dataclass
class Cost:
    phases: list[CostPhase]
    #: ``/_sidecar/ready``'s ``ubi`` of the enabled sidecar (and of the disabled one).
    state: dict[str, Any]
    off_state: dict[str, Any]
    #: Documents in the enabled sidecar's queries index, and searches sent to it.
    count: int
    sent: int


def cost_of_logging(
    b: Bench, es_url: str, es_pid: int | None, data: EvalSet, config: dict[str, Any]
) -> Cost:
    rules = b.work / "rules-cost.yaml"
    write_rules(rules, "off")
    disabled, enabled = _start_pair(b, es_url, rules, config)
    texts = list(data.queries.values())

    def bodies(r: int) -> list[bytes]:
        shift = (r * 7) % len(texts)  # each round starts elsewhere in the list
        return [json.dumps(search_body(t)).encode() for t in texts[shift:] + texts[:shift]]

    path = f"/{INDEX}/_search"
    phases: list[CostPhase] = []
    for mode, concurrency, per_round, rounds, warm in (
        ("off", 2, b.scale(60, 30), b.scale(6, 2), 20),
        ("on", 1, b.scale(12, 5), b.scale(4, 2), 3),
    ):
        write_rules(rules, mode)
        for sc in (disabled, enabled):
            _post(
                f"{sc.url}/_sidecar/admin/rollout/reload",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        contenders = [
            Contender(
                LoadTarget(label, sc.url + path, bodies, concurrency, per_round, sc.proc.pid), sc
            )
            for label, sc in (("ubi.enabled: false", disabled), ("ubi.enabled: true", enabled))
        ]
        asyncio.run(cost_rounds(contenders, es_pid, rounds, warm))
        phases.append(CostPhase(mode, contenders, rounds))
    flushed(enabled, es_url, [COST_INDEX])
    count = int(_get(f"{es_url}/{COST_INDEX}/_count").get("count", -1))
    sent = sum(ph.contenders[1].sent for ph in phases)
    return Cost(phases, log_state(enabled), log_state(disabled), count, sent)


# --- the scenario ---------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def _pct(values: Sequence[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return math.nan
    return data[min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))]


def run(b: Bench) -> Section:
    sec = Section(
        12,
        "UBI: how many interleaved queries a verdict needs, and what logging costs (bundled "
        f"MiniLM, window {WINDOW}, budget {DEFAULTS.budget_ms:.0f} ms, msmarco-dl-5k)",
    )
    data = read_eval_set(DEFAULT_DATASET)
    es = LocalES.start(data_dir=b.work / "es-ubi")
    b.stack.callback(es.close)
    load_corpus(es.url, data, INDEX, progress=False)
    common: dict[str, Any] = {
        "rerank": {"window": WINDOW, "cache": {"enabled": False}},
        "admin": {"token": TOKEN},
    }
    part_a(b, sec, es.url, data, common)
    part_b(b, sec, es.url, es.proc.pid if es.proc else None, data, common)
    return sec


def part_a(b: Bench, sec: Section, es_url: str, data: EvalSet, common: dict[str, Any]) -> None:
    searches = b.scale(300, 60)
    users = 2
    sequences = b.scale(*SEQUENCES)
    max_queries = b.scale(*MAX_QUERIES)
    config = common | {
        # The teams and K are read from the answers' _rerank annotations (off by default).
        "rerank": common["rerank"] | {"annotate": True},
        "ubi": {"enabled": True},
        "rollout": {"default": "interleave", "trusted_clients": ["127.0.0.1/32"]},
    }
    sc = b.sidecar("ubi-interleave", es_url, BUNDLED_MODEL, config)
    # Warm the cost model before the users come (these searches fall before the period).
    asyncio.run(rankings(sc.url, data, {}, limit=5))
    time.sleep(0.01)
    since = utc(datetime.now(UTC))
    t0 = time.perf_counter()
    pages, wall = asyncio.run(serve_users(sc.url, data, searches, users, NAVIGATIONAL))
    flushed(sc, es_url, ["ubi_queries", "ubi_events"])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    endpoint = _get(f"{sc.url}/_sidecar/ubi/report?since={since}", auth)
    logged = asyncio.run(read_log(es_url, "ubi_queries", since))
    posted: dict[str, list[Click]] = {}
    for page in pages:
        posted[page.query_id] = [
            Click(e["event_attributes"]["object"]["object_id"], e["timestamp"]) for e in page.events
        ]
    from_log = report(logged, posted)
    from_answers = report([p.served() for p in pages if p.status == 200], posted)
    state = log_state(sc)
    served_s = time.perf_counter() - t0
    # Context: nDCG@10 of ES's order and of the reranked order, every judged query once.
    bm25 = asyncio.run(rankings(es_url, data, {}))
    reranked = asyncio.run(rankings(sc.url, data, {MODE_HEADER: "on"}))
    sc.stop()

    by_id = {p.query_id: p for p in pages}
    lists = [(s, data.qrels[by_id[s.query_id].qid]) for s in logged if s.compared and s.teams]
    t1 = time.perf_counter()
    needed = [resample(lists, m, sequences, max_queries) for m in CLICK_MODELS] if lists else []
    resample_s = time.perf_counter() - t1

    ok_pages = [p for p in pages if p.status == 200]
    inter = [p for p in ok_pages if p.interleaved]
    share = len(inter) / len(ok_pages) if ok_pages else 0.0
    outcomes = Counter(
        "applied; window=K" if p.header.startswith("applied; window=") else p.header for p in pages
    )
    ks = [p.k for p in inter]
    served_clicks = sum(len(p.clicked) for p in pages)
    bad_events = Counter(p.events_status for p in pages if p.events and p.events_status != 202)

    def mean_ndcg(rank: dict[str, Any]) -> float:
        return statistics.fmean(ndcg_at(rank[q][0], data.qrels[q], NDCG_K) for q in rank)

    per_query: dict[str, list[float]] = {}
    for p in inter:
        per_query.setdefault(p.qid, []).append(ndcg_at(p.ids, data.qrels[p.qid], NDCG_K))
    inter_ndcg = (
        statistics.fmean(statistics.fmean(v) for v in per_query.values()) if per_query else math.nan
    )
    reranked_n = sum(1 for v in reranked.values() if v[2] > 0)
    full_n = sum(1 for v in reranked.values() if v[2] >= WINDOW)

    e = endpoint["interleaving"]
    keys = ("queries", "rerank_wins", "es_wins", "ties", "p_value")
    same_log = all(from_log["interleaving"][k] == e[k] for k in keys) and (
        from_log["clicks"]["matched"] == endpoint["clicks"]["matched"]
    )
    same_answers = all(from_answers["interleaving"][k] == e[k] for k in keys)
    sec.body += [
        "#### A. Queries needed for a verdict, as served",
        "",
        f"One sidecar, `ubi.enabled: true`, `rollout.default: interleave`, `rerank.window` "
        f"{WINDOW}, default budget ({DEFAULTS.budget_ms:.0f} ms), score cache off. {searches} "
        f"searches by {users} simulated users at a time (closed loop), each a judged query "
        f"drawn with a seeded RNG (seed {SEED}) from the {len(data.queries)}, a fresh "
        f"`ext.ubi.query_id`, size {PAGE}; {wall:.0f} s of searching "
        f"({len(ok_pages) / wall:.2f} searches/s), p50 "
        f"{_ms(_pct([p.latency_s for p in ok_pages], 50))} ms, p99 "
        f"{_ms(_pct([p.latency_s for p in ok_pages], 99))} ms.",
        "",
        f"**Served interleaved: {len(inter)}/{len(ok_pages)} pages ({share:.1%})**; the rest "
        f"fell back to ES's order (the model could not score {DEFAULTS.min_window}+ hits in "
        f"the budget) and count for neither team. X-Rerank: "
        + ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
        + (f"; mean K of the interleaved pages {statistics.fmean(ks):.1f}" if ks else "")
        + f". Non-200 searches: {len(pages) - len(ok_pages)}.",
        "",
        f"Clicks of the served run ({NAVIGATIONAL.name} users: {NAVIGATIONAL.text()}): "
        f"{served_clicks} clicks on {sum(1 for p in pages if p.clicked)} pages, POSTed to "
        "`/_sidecar/ubi/events` one request per page"
        + (f"; **not accepted: {dict(bad_events)}**" if bad_events else " (all 202)")
        + ".",
        "",
        "The report endpoint (`GET /_sidecar/ubi/report?since=<start of the run>`):",
        "",
        "| source | interleaved queries | rerank wins | ES wins | ties | p-value | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fig in (
        ("report endpoint", endpoint),
        ("offline: the log in ES (the report's reader) + the clicks sent", from_log),
        ("offline: the answers received (`_rerank.team`) + the clicks sent", from_answers),
    ):
        i = fig["interleaving"]
        sec.body.append(
            f"| {name} | {i['queries']} | {i['rerank_wins']} | {i['es_wins']} | {i['ties']} | "
            f"{i['p_value']:.3g} | {i['verdict']} |"
        )
    cohort = endpoint["cohorts"].get("interleave", {})
    sec.body += [
        "",
        f"Clicks matched by the report: {endpoint['clicks']['matched']} (of {served_clicks} "
        f"sent; on other objects {endpoint['clicks']['on_other_objects']}, on unknown queries "
        f"{endpoint['clicks']['on_unknown_queries']}); interleave cohort: "
        f"{cohort.get('queries', 0)} queries, MRR {cohort.get('mrr', 0):.3f}, abandonment "
        f"{cohort.get('abandonment_rate', 0):.1%}. The log: written {state.get('written')}, "
        f"dropped {state.get('dropped') or 0}, last error {state.get('last_error')}.",
        "",
    ]
    if needed:
        sec.body += [
            f"Resampled (seeded): {sequences} sequences per click model, each up to "
            f"{max_queries} interleaved queries drawn with replacement from the "
            f"{len(lists)} pages served interleaved, clicks simulated afresh for every draw, "
            "credited by `sidecar.ubi.report.Tally` and tested by `sidecar.ubi.stats."
            f"sign_test` after every query. *Reached*: the first n with p < {ALPHA} and the "
            "reranker ahead; *stays*: the n from which that holds to the end of the sequence. "
            f"'searches served' = n / the interleaved share ({share:.1%}): the searches a "
            "rollout to interleave serves to get n interleaved queries on this machine.",
            "",
            "| users | click model | clicked / decisive per query | reranker's share of "
            f"decisive | reached: median | p80 | ≥ {POWER:.0%} of sequences by n | searches "
            "served for that | stays: median | p80 | "
            + " | ".join(f"by {c}" for c in CHECKPOINTS if c <= max_queries)
            + " |",
            "|---|---|---|---|---|---|---|---|---|---|"
            + "---|" * sum(1 for c in CHECKPOINTS if c <= max_queries),
        ]
        for nd in needed:
            p80 = nd.power_n()
            served_for = f"{float(p80) / share:.0f}" if p80.isdigit() and share else "—"
            sec.body.append(
                f"| {nd.model.name} | {nd.model.text()} | {nd.clicked / nd.draws:.2f} / "
                f"{nd.decisive / nd.draws:.2f} | "
                f"{nd.rerank_wins / nd.decisive if nd.decisive else math.nan:.1%} | "
                f"{nd.quantile(nd.first, 0.5)} | {nd.quantile(nd.first, 0.8)} | **{p80}** | "
                f"{served_for} | {nd.quantile(nd.stays, 0.5)} | {nd.quantile(nd.stays, 0.8)} | "
                + " | ".join(f"{nd.reached_by(c):.0%}" for c in CHECKPOINTS if c <= max_queries)
                + " |"
            )
        sec.body += [
            "",
            "Why these users: " + "; ".join(f"{m.name}: {m.why}" for m in CLICK_MODELS) + ".",
            "",
        ]
    else:
        sec.body += ["**No page was served interleaved: nothing to resample.**", ""]
    sec.body += [
        f"Context, nDCG@{NDCG_K} on the {len(data.queries)} judged queries (each once, one at "
        f"a time): ES's order **{mean_ndcg(bm25):.4f}**; through this sidecar at `on` as "
        f"served **{mean_ndcg(reranked):.4f}** ({reranked_n}/{len(reranked)} reranked, "
        f"{full_n} with all {WINDOW}); the pages served interleaved above "
        f"{inter_ndcg:.4f} (per query the mean over its pages). The judged set's README: "
        "BM25 0.575, top-20 reordered by MiniLM 0.673.",
        "",
        f"Part A took {served_s:.0f} s serving and reporting, {resample_s:.0f} s resampling.",
        "",
    ]
    sec.goals += [
        Goal(
            "12 UBI report",
            "the report endpoint's interleaving equals the offline tally of the log and of "
            "the answers",
            f"endpoint {e['rerank_wins']}:{e['es_wins']} ({e['ties']} ties, p {e['p_value']:.3g}"
            f"); log {'equal' if same_log else 'DIFFERENT'}; answers "
            f"{'equal' if same_answers else 'DIFFERENT'}",
            same_log and same_answers,
            ""
            if same_log and same_answers
            else f"log {from_log['interleaving']}; answers {from_answers['interleaving']}",
        ),
        Goal(
            "12 UBI as served",
            "pages served interleaved (information)",
            f"{len(inter)}/{len(ok_pages)} ({share:.1%})",
            None,
        ),
    ]
    for nd in needed:
        sec.goals.append(
            Goal(
                f"12 UBI queries needed ({nd.model.name})",
                f"interleaved queries until p < {ALPHA}, reranker ahead (information)",
                f"median {nd.quantile(nd.first, 0.5)}, p80 {nd.quantile(nd.first, 0.8)}",
                None,
            )
        )


def part_b(
    b: Bench, sec: Section, es_url: str, es_pid: int | None, data: EvalSet, common: dict[str, Any]
) -> None:
    cost = cost_of_logging(b, es_url, es_pid, data, common)
    sec.body += [
        "#### B. What logging costs (one run, interleaved)",
        "",
        "Two sidecars on the same ES, identical but for `ubi.enabled`; the same search bodies "
        f"(the {len(data.queries)} judged queries, size {PAGE} with `_source`, no `ext.ubi`) "
        "to both; closed-loop clients; each round runs both contenders in turn, and a "
        "contender's round lasts until its log is written (its queue empty), so the writes "
        "are charged to the searches that made them. The mode comes from a rules file, "
        "reloaded through the admin API between the phases. 'server CPU' is the sidecar "
        "process's CPU time per search (/proc; model threads and the log writer included); "
        "'ES CPU' is the ES-compatible server's during that contender's rounds (its searches, "
        "and the log's `_bulk` writes).",
        "",
    ]
    for ph in cost.phases:
        base, logged = ph.contenders
        r0, r1 = base.target.result, logged.target.result
        added = (r1.pct(50) - r0.pct(50)) * 1000
        ratio = r1.pct(50) / r0.pct(50) if r0.pct(50) else math.nan
        us0, us1 = base.target.server_us or math.nan, logged.target.server_us or math.nan
        cpu = us1 / us0
        sec.body += [
            f"Rollout `{ph.mode}`, concurrency {base.target.concurrency}, {ph.rounds} rounds of "
            f"{base.target.per_round} searches per contender:",
            "",
            latency_table(ph.targets),
            "",
            f"Logging at `{ph.mode}`: **added p50 {added:+.2f} ms ({ratio:.3f}×)**, p99 "
            f"{(r1.pct(99) - r0.pct(99)) * 1000:+.2f} ms; searches/s "
            f"{r1.throughput / r0.throughput if r0.throughput else math.nan:.3f}×; **sidecar "
            f"CPU per search {us1:.0f} vs {us0:.0f} µs ({cpu:.2f}×, {us1 - us0:+.0f} µs)**; ES "
            f"CPU per search {logged.es_us:.0f} vs {base.es_us:.0f} µs "
            f"({logged.es_us - base.es_us:+.0f} µs).",
            "",
        ]
        sec.goals.append(
            Goal(
                f"12 UBI logging cost at {ph.mode}",
                "added p50 and sidecar CPU per search, enabled vs disabled (information)",
                f"p50 {added:+.2f} ms ({ratio:.3f}×), CPU/search {cpu:.2f}× ({us1 - us0:+.0f} µs)",
                None,
            )
        )
    state = cost.state
    lost = state.get("dropped") or {}
    ok = not lost and state.get("written") == cost.sent == cost.count
    sec.body += [
        f"What the log wrote (`/_sidecar/ready` of the enabled one, after its queue emptied): "
        f"written {state.get('written')}, dropped {lost or 0}, queued bytes "
        f"{state.get('queued_bytes')}, last error {state.get('last_error')}; searches sent to "
        f"it (warm-up included) {cost.sent}; documents in its `{COST_INDEX}` index "
        f"{cost.count}. The disabled one's `/_sidecar/ready` has `ubi`: "
        f"{cost.off_state or 'absent'}.",
        "",
    ]
    sec.goals.append(
        Goal(
            "12 UBI logging",
            "every search logged, nothing dropped",
            f"written {state.get('written')} of {cost.sent} sent, {cost.count} in the index, "
            f"dropped {lost or 0}",
            ok,
            "" if ok else f"ready ubi: {state}",
        )
    )
