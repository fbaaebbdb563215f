"""Soak test: a mixed load against a real sidecar process for a set time (or a set number of
requests), with model faults toggled on the way, and a report of what the sidecar did with it.

    python -m devtools.soak --duration 60
    python -m devtools.soak --duration 600 --json soak.json
    python -m devtools.soak --requests 800 --fault-every-requests 60

It starts (unless given ``--es-url``) a local ES-compatible server with the sample corpus, a
fault-injecting rerank server (:class:`devtools.fakes.FaultModel`) and
``rerank-sidecar serve`` as a child process using that rerank server (remote backend).
Then ``--concurrency`` clients send, at most ``--rate`` requests per second in all (all on
127.0.0.1):

* searches with rerank on fresh queries (cache misses) and on a few hot queries (cache
  hits, and the response cache), some in shadow mode;
* ``_msearch`` with two or three sub-searches;
* pass-through writes (``_doc``) and reads (``_count``);
* direct ``/_sidecar/v1/rerank`` calls, and a few malformed requests (which must get a 4xx).

Every ``--fault-every`` seconds (or ``--fault-every-requests`` requests) the rerank server
switches between healthy and one fault (slow past the budget, hanging, HTTP 500, NaN, a score
short, HTTP 503). Every response is checked: searches must be 200 with valid ES JSON and an
``X-Rerank`` header that agrees with the body, whatever the model does. Anything else is an
*unexplained* error.

The report gives throughput, counts and errors by kind, p50/p99 latency, the sidecar's RSS
(``/proc/PID/status``) at start and end, and the largest score cache, response cache, model
queue and shadow-task figures seen (``/_sidecar/metrics``) against their bounds. The exit
code is 0 when there was no unexplained error, RSS grew by at most ``--max-rss-growth-mb``
and every figure stayed within its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from devtools.clients import (
    Request,
    Result,
    Tally,
    check_search_response,
    parse_metrics,
    run_clients,
)
from devtools.fakes import FaultModel
from devtools.procfs import rss_bytes
from es_integration.corpus import (
    SAMPLE_INDEX,
    load_sample,
    read_jsonl,
    sample_corpus_path,
    sample_queries_path,
)
from es_integration.es_rest import ESRest
from es_integration.local_es import LocalES
from es_integration.sidecar_proc import SidecarProcess

ADMIN_TOKEN = "soak-admin-token"
#: Model modes the soak cycles through, each followed by a healthy period.
FAULT_CYCLE = ("slow", "error", "hang", "nan", "wrong_count", "overloaded")
WRITE_INDEX = "soak-writes"


# --- the soak's request mix -----------------------------------------------------------------


def _vocabulary() -> list[str]:
    words: set[str] = set()
    for doc in read_jsonl(sample_corpus_path()):
        words.update(w for w in re.findall(r"[a-z]{4,}", str(doc.get("title", "")).lower()))
    return sorted(words)


def _hot_queries() -> list[str]:
    queries = [q["query"] for q in read_jsonl(sample_queries_path())]
    return [q for q in queries if q.isascii()][:8] or ["library card renew"]


def _search_body(query: str, size: int = 10) -> dict[str, Any]:
    return {
        "query": {"multi_match": {"query": query, "fields": ["title^2", "body", "subjects"]}},
        "size": size,
    }


class Mix:
    """The soak's weighted request mix over one index."""

    def __init__(self, index: str, seed: int = 7) -> None:
        self.index = index
        self.vocab = _vocabulary()
        self.hot = _hot_queries()
        self.write_seq = 0
        self.weights: list[tuple[Callable[[random.Random], Any], float]] = [
            (self.fresh_search, 30),
            (self.hot_search, 25),
            (self.shadow_search, 5),
            (self.msearch, 12),
            (self.write, 10),
            (self.count, 6),
            (self.direct_rerank, 6),
            (self.bad_request, 6),
        ]

    def pick(self, rng: random.Random) -> Request:
        makers, weights = zip(*self.weights, strict=True)
        maker: Callable[[random.Random], Any] = rng.choices(makers, weights)[0]
        made: Request = maker(rng)
        return made

    def _fresh_query(self, rng: random.Random) -> str:
        return " ".join(rng.sample(self.vocab, 4)) + f" {rng.randrange(10**6)}"

    def _search(
        self, kind: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Any:
        async def go(session: aiohttp.ClientSession, base: str) -> Result:
            t0 = time.perf_counter()
            async with session.post(
                f"{base}/{self.index}/_search", json=body, headers=headers
            ) as resp:
                data = await resp.read()
                problem = check_search_response(resp.status, resp.headers, data, msearch=False)
                outcome = resp.headers.get("X-Rerank", "")
            return Result(kind, resp.status, time.perf_counter() - t0, outcome, problem)

        go.kind = kind  # type: ignore[attr-defined]
        return go

    def fresh_search(self, rng: random.Random) -> Any:
        return self._search("search", _search_body(self._fresh_query(rng)))

    def hot_search(self, rng: random.Random) -> Any:
        return self._search("hot_search", _search_body(rng.choice(self.hot)))

    def shadow_search(self, rng: random.Random) -> Any:
        body = _search_body(self._fresh_query(rng))
        return self._search("shadow_search", body, {"X-Rerank-Mode": "shadow"})

    def msearch(self, rng: random.Random) -> Any:
        lines: list[str] = []
        for _ in range(rng.randint(2, 3)):
            query = rng.choice(self.hot) if rng.random() < 0.5 else self._fresh_query(rng)
            lines += [json.dumps({"index": self.index}), json.dumps(_search_body(query, 5))]
        data = ("\n".join(lines) + "\n").encode()

        async def go(session: aiohttp.ClientSession, base: str) -> Result:
            t0 = time.perf_counter()
            async with session.post(
                f"{base}/_msearch", data=data, headers={"Content-Type": "application/x-ndjson"}
            ) as resp:
                body = await resp.read()
                problem = check_search_response(resp.status, resp.headers, body, msearch=True)
                outcome = resp.headers.get("X-Rerank", "")
            return Result("msearch", resp.status, time.perf_counter() - t0, outcome, problem)

        go.kind = "msearch"  # type: ignore[attr-defined]
        return go

    def write(self, rng: random.Random) -> Any:
        self.write_seq += 1
        doc_id = f"w{self.write_seq % 5000}"
        doc = {"title": self._fresh_query(rng), "body": "written by the soak", "n": self.write_seq}

        async def go(session: aiohttp.ClientSession, base: str) -> Result:
            t0 = time.perf_counter()
            async with session.put(f"{base}/{WRITE_INDEX}/_doc/{doc_id}", json=doc) as resp:
                await resp.read()
                problem = None if resp.status in (200, 201) else f"status {resp.status}"
            return Result("write", resp.status, time.perf_counter() - t0, problem=problem)

        go.kind = "write"  # type: ignore[attr-defined]
        return go

    def count(self, rng: random.Random) -> Any:
        async def go(session: aiohttp.ClientSession, base: str) -> Result:
            t0 = time.perf_counter()
            async with session.get(f"{base}/{self.index}/_count") as resp:
                data = await resp.read()
                ok = resp.status == 200 and b'"count"' in data
            problem = None if ok else f"status {resp.status}"
            return Result("count", resp.status, time.perf_counter() - t0, problem=problem)

        go.kind = "count"  # type: ignore[attr-defined]
        return go

    def direct_rerank(self, rng: random.Random) -> Any:
        body = {
            "query": rng.choice(self.hot),
            "documents": [self._fresh_query(rng) for _ in range(rng.randint(1, 8))],
        }

        async def go(session: aiohttp.ClientSession, base: str) -> Result:
            t0 = time.perf_counter()
            async with session.post(f"{base}/_sidecar/v1/rerank", json=body) as resp:
                data = await resp.read()
            latency = time.perf_counter() - t0
            if resp.status == 200:
                ok = len(json.loads(data).get("results", [])) == len(body["documents"])
                problem = None if ok else "wrong number of results"
                return Result("rerank_api", 200, latency, problem=problem)
            if resp.status == 503 and b"service_unavailable_exception" in data:
                # The documented answer of the direct API while the model is faulty.
                return Result("rerank_api", 503, latency, explained="503 model unavailable")
            return Result("rerank_api", resp.status, latency, problem=f"status {resp.status}")

        go.kind = "rerank_api"  # type: ignore[attr-defined]
        return go

    def bad_request(self, rng: random.Random) -> Any:
        choices: list[tuple[str, str, bytes, dict[str, str]]] = [
            ("POST", f"/{self.index}/_search", b'{"query": {"match": ', {}),
            ("POST", "/_sidecar/v1/rerank", b'{"query": 5, "documents": ["a"]}', {}),
            ("POST", "/_sidecar/v1/rerank", b"\xff\xfe not utf-8", {}),
            (
                "POST",
                f"/{self.index}/_search",
                b'{"query": {"match": {"title": "x"}}, "rerank": {"window": 100000}}',
                {},
            ),
        ]
        method, path, data, headers = rng.choice(choices)

        async def go(session: aiohttp.ClientSession, base: str) -> Result:
            t0 = time.perf_counter()
            hdrs = {"Content-Type": "application/json", **headers}
            async with session.request(method, base + path, data=data, headers=hdrs) as resp:
                body = await resp.read()
            latency = time.perf_counter() - t0
            if 400 <= resp.status < 500 and b'"reason"' in body:
                return Result("bad_request", resp.status, latency, explained=f"{resp.status}")
            return Result("bad_request", resp.status, latency, problem=f"status {resp.status}")

        go.kind = "bad_request"  # type: ignore[attr-defined]
        return go


# --- figures over time ----------------------------------------------------------------------


@dataclass
class Figures:
    rss_start: int = 0
    rss_end: int = 0
    rss_max: int = 0
    samples: list[dict[str, float]] = field(default_factory=list)
    breaker_states: Counter[str] = field(default_factory=Counter)
    peak: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    bounds: dict[str, float] = field(default_factory=dict)


LIVE_FIGURES = {
    "score_cache_entries": "rerank_sidecar_score_cache_entries",
    "response_cache_entries": "rerank_sidecar_response_cache_entries",
    "queue_pairs": "rerank_sidecar_queue_pairs",
    "shadow_tasks": "rerank_sidecar_shadow_tasks",
}


async def sample_figures(
    session: aiohttp.ClientSession, base: str, pid: int, figures: Figures
) -> None:
    rss = rss_bytes(pid)
    figures.rss_max = max(figures.rss_max, rss)
    async with session.get(f"{base}/_sidecar/metrics") as resp:
        metrics = parse_metrics(await resp.text())
    sample: dict[str, float] = {"t": time.monotonic(), "rss": float(rss)}
    for name, metric in LIVE_FIGURES.items():
        sample[name] = metrics.get(metric, 0.0)
        figures.peak[name] = max(figures.peak[name], sample[name])
    for state in ("closed", "open", "half-open"):
        if metrics.get(f'rerank_sidecar_breaker_state{{state="{state}"}}') == 1.0:
            figures.breaker_states[state] += 1
    figures.samples.append(sample)


# --- the soak -------------------------------------------------------------------------------


@dataclass
class SoakConfig:
    duration_s: float | None = 60.0
    #: Stop after this many requests instead of (or before) ``duration_s``.
    requests: int | None = None
    concurrency: int = 32
    rate: float = 150.0
    fault_every_s: float = 5.0
    #: Toggle faults every this many requests instead of every ``fault_every_s`` seconds.
    fault_every_requests: int | None = None
    sample_every_s: float = 2.0
    es_url: str | None = None
    max_rss_growth_mb: float = 50.0
    score_cache_entries: int = 20000
    response_cache_entries: int = 300
    max_queue_pairs: int = 4096
    max_shadow_tasks: int = 16
    log_dir: Path | None = None
    seed: int = 7

    @property
    def load_text(self) -> str:
        bounds = [f"{self.duration_s:g} s" if self.duration_s is not None else ""]
        bounds.append(f"{self.requests} requests" if self.requests is not None else "")
        return " or ".join(b for b in bounds if b)


@dataclass
class SoakReport:
    config: SoakConfig
    tally: Tally
    figures: Figures
    faults: list[tuple[float, str]]
    log_path: Path
    sidecar_exit: int | None = None

    @property
    def rss_growth_mb(self) -> float:
        return (self.figures.rss_end - self.figures.rss_start) / 2**20

    def within_bounds(self) -> dict[str, bool]:
        b, p = self.figures.bounds, self.figures.peak
        return {name: p[name] <= b[name] for name in b}

    @property
    def passed(self) -> bool:
        return (
            not self.tally.unexplained()
            and self.rss_growth_mb <= self.config.max_rss_growth_mb
            and all(self.within_bounds().values())
            and self.sidecar_exit in (None, 0)
        )

    def as_dict(self) -> dict[str, Any]:
        t, f = self.tally, self.figures
        kinds = sorted(t.by_kind())
        return {
            "duration_s": round(t.wall_s, 1),
            "requests": len(t.results),
            "throughput_rps": round(len(t.results) / t.wall_s, 1) if t.wall_s else 0.0,
            "requests_by_kind": dict(t.by_kind()),
            "latency_ms": {
                "p50": round(t.percentile(50) * 1000, 1),
                "p99": round(t.percentile(99) * 1000, 1),
                "p99_by_kind": {k: round(t.percentile(99, k) * 1000, 1) for k in kinds},
            },
            "rerank_outcomes": dict(t.outcomes().most_common()),
            "unexplained_errors": dict(t.unexplained()),
            "explained_errors": dict(t.explained()),
            "faults_toggled": [m for _, m in self.faults],
            "breaker_states_sampled": dict(f.breaker_states),
            "rss_mb": {
                "start": round(f.rss_start / 2**20, 1),
                "end": round(f.rss_end / 2**20, 1),
                "max": round(f.rss_max / 2**20, 1),
                "growth": round(self.rss_growth_mb, 1),
            },
            "peaks_vs_bounds": {
                name: {"peak": f.peak[name], "bound": f.bounds[name]} for name in f.bounds
            },
            "sidecar_exit_code": self.sidecar_exit,
            "passed": self.passed,
        }


@contextlib.asynccontextmanager
async def _es(url: str | None, data_dir: Path) -> AsyncIterator[str]:
    if url:
        yield url
        return
    es = await asyncio.to_thread(LocalES.start, data_dir=data_dir / "es")
    try:
        yield es.url
    finally:
        await asyncio.to_thread(es.stop)


async def _load_corpus(es_url: str, index: str) -> None:
    def load() -> None:
        load_sample(es_url, index)
        ESRest(es_url).call("DELETE", f"/{WRITE_INDEX}", missing_ok=True)

    await asyncio.to_thread(load)


def sidecar_config(cfg: SoakConfig) -> dict[str, Any]:
    return {
        "rerank": {
            "budget_ms": 300,
            "window": 20,
            "breaker": {"fail_max": 3, "reset_timeout_s": 1.0},
            "response_cache": {"enabled": True},
        },
        "tuning": {
            "limits": {
                "score_cache_entries": cfg.score_cache_entries,
                "response_cache_entries": cfg.response_cache_entries,
                "max_shadow_tasks": cfg.max_shadow_tasks,
            },
            "worker": {"max_queue_pairs": cfg.max_queue_pairs},
            "remote": {"read_timeout_s": 5},
        },
        "api": {"timeout_s": 2},
        "rollout": {"trusted_clients": ["127.0.0.1/32"]},
        "admin": {"token": ADMIN_TOKEN},
    }


async def _next_phase(cfg: SoakConfig, tally: Tally, step: int, stop: asyncio.Event) -> None:
    if cfg.fault_every_requests is not None:
        phase_over = asyncio.ensure_future(tally.reached(step * cfg.fault_every_requests))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({phase_over, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for fut in (phase_over, stopped):
            fut.cancel()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), cfg.fault_every_s)


async def _toggle_faults(
    model: FaultModel,
    cfg: SoakConfig,
    tally: Tally,
    stop: asyncio.Event,
    log: list[tuple[float, str]],
) -> None:
    t0 = time.monotonic()
    step = 0
    while not stop.is_set():
        # ok, fault, ok, fault, ...: healthy periods between faults refill the caches.
        mode = "ok" if step % 2 == 0 else FAULT_CYCLE[(step // 2) % len(FAULT_CYCLE)]
        model.mode, model.delay_s = mode, 1.0
        log.append((round(time.monotonic() - t0, 1), mode))
        step += 1
        await _next_phase(cfg, tally, step, stop)
    model.mode = "ok"


async def _drained(session: aiohttp.ClientSession, base: str, timeout_s: float = 30.0) -> None:
    """Wait until the model queue and the shadow tasks are empty (the load is over)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with session.get(f"{base}/_sidecar/metrics") as resp:
            metrics = parse_metrics(await resp.text())
        busy = metrics.get(LIVE_FIGURES["queue_pairs"], 0.0) + metrics.get(
            LIVE_FIGURES["shadow_tasks"], 0.0
        )
        if busy == 0:
            return
        await asyncio.sleep(0.05)


async def _sampler(
    base: str, pid: int, figures: Figures, stop: asyncio.Event, every_s: float
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await sample_figures(session, base, pid, figures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)


async def soak(cfg: SoakConfig, *, progress: Callable[[str], None] | None = None) -> SoakReport:
    say = progress or (lambda _msg: None)
    work = Path(tempfile.mkdtemp(prefix="soak-")) if cfg.log_dir is None else cfg.log_dir
    work.mkdir(parents=True, exist_ok=True)
    index = f"{SAMPLE_INDEX}-soak"
    async with _es(cfg.es_url, work) as es_url, FaultModel() as model:
        say(f"ES at {es_url}; loading the sample corpus into '{index}'")
        await _load_corpus(es_url, index)
        log_path = work / "sidecar.log"
        sc = await asyncio.to_thread(
            SidecarProcess.start,
            es_url,
            log_path=log_path,
            model=model.url,
            config=sidecar_config(cfg),
            wait_ready=True,
        )
        figures = Figures(
            bounds={
                "score_cache_entries": float(cfg.score_cache_entries),
                "response_cache_entries": float(cfg.response_cache_entries),
                "queue_pairs": float(cfg.max_queue_pairs),
                "shadow_tasks": float(cfg.max_shadow_tasks),
            }
        )
        faults: list[tuple[float, str]] = []
        exit_code: int | None = None
        try:
            figures.rss_start = rss_bytes(sc.proc.pid)
            say(
                f"sidecar pid {sc.proc.pid} at {sc.url}, RSS {figures.rss_start / 2**20:.1f} MB; "
                f"{cfg.concurrency} clients, <= {cfg.rate:g} req/s, {cfg.load_text}"
            )
            stop = asyncio.Event()
            tally = Tally()
            every = cfg.sample_every_s
            background = [
                asyncio.create_task(_toggle_faults(model, cfg, tally, stop, faults)),
                asyncio.create_task(_sampler(sc.url, sc.proc.pid, figures, stop, every)),
            ]
            mix = Mix(index, cfg.seed)
            try:
                await run_clients(
                    sc.url,
                    mix.pick,
                    duration_s=cfg.duration_s,
                    requests=cfg.requests,
                    concurrency=cfg.concurrency,
                    rate=cfg.rate,
                    seed=cfg.seed,
                    tally=tally,
                )
            finally:
                stop.set()
                await asyncio.gather(*background)
            # A last look once the load is over: queues drained, process still serving.
            async with aiohttp.ClientSession() as session:
                await _drained(session, sc.url)
                await sample_figures(session, sc.url, sc.proc.pid, figures)
            figures.rss_end = rss_bytes(sc.proc.pid)
            if sc.proc.poll() is not None:
                tally.results.append(Result("process", 0, 0.0, problem="sidecar exited"))
        finally:
            exit_code = await asyncio.to_thread(sc.stop)
    return SoakReport(cfg, tally, figures, faults, log_path, exit_code)


def format_report(report: SoakReport) -> str:
    d = report.as_dict()
    lines = [
        f"soak: {d['duration_s']} s, {d['requests']} requests, {d['throughput_rps']} req/s",
        "requests by kind: "
        + ", ".join(f"{k}={v}" for k, v in sorted(d["requests_by_kind"].items())),
        f"latency: p50 {d['latency_ms']['p50']} ms, p99 {d['latency_ms']['p99']} ms",
        "p99 by kind (ms): "
        + ", ".join(f"{k}={v}" for k, v in d["latency_ms"]["p99_by_kind"].items()),
        "rerank outcomes: " + ", ".join(f"{k}={v}" for k, v in d["rerank_outcomes"].items()),
        f"faults toggled: {' '.join(d['faults_toggled'])}",
        f"breaker states seen (samples): {d['breaker_states_sampled']}",
        "explained errors: "
        + (", ".join(f"{k}={v}" for k, v in d["explained_errors"].items()) or "none"),
        "UNEXPLAINED errors: "
        + (", ".join(f"{k}={v}" for k, v in d["unexplained_errors"].items()) or "none"),
        "RSS (MB): start {start}, end {end}, max {max}, growth {growth}".format(**d["rss_mb"]),
        "peaks vs bounds: "
        + ", ".join(f"{k} {v['peak']:g}/{v['bound']:g}" for k, v in d["peaks_vs_bounds"].items()),
        f"sidecar exit code: {d['sidecar_exit_code']}",
        f"RESULT: {'PASS' if d['passed'] else 'FAIL'} (goals: 0 unexplained errors, RSS growth "
        f"<= {report.config.max_rss_growth_mb:g} MB, every figure within its bound)",
    ]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, help="seconds of load (60 unless --requests is given)")
    p.add_argument("--requests", type=int, help="stop after this many requests")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent clients (32)")
    p.add_argument("--rate", type=float, default=150.0, help="max requests/s in all (150)")
    p.add_argument("--fault-every", type=float, default=5.0, help="seconds per fault phase")
    p.add_argument("--fault-every-requests", type=int, help="requests per fault phase")
    p.add_argument("--es-url", help="use this ES instead of starting a local one")
    p.add_argument("--max-rss-growth-mb", type=float, default=50.0)
    p.add_argument("--log-dir", type=Path, help="where the sidecar's log goes")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")


def run_cli(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = SoakConfig(
        duration_s=args.duration if args.duration or args.requests else 60.0,
        requests=args.requests,
        concurrency=args.concurrency,
        rate=args.rate,
        fault_every_s=args.fault_every,
        fault_every_requests=args.fault_every_requests,
        es_url=args.es_url,
        max_rss_growth_mb=args.max_rss_growth_mb,
        log_dir=args.log_dir,
    )
    report = asyncio.run(soak(cfg, progress=lambda m: print(m, file=sys.stderr, flush=True)))
    print(format_report(report))
    print(f"sidecar log: {report.log_path}")
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=2))
    return 0 if report.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.soak",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
