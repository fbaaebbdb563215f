"""Relevance evaluation: every judged query straight to ES and through the sidecar.

    python -m devtools.eval [--dataset DIR] [--window 20 100] [--score-mode replace fusion]
        [--fusion-weight 0.5 0.7] [--instruction TEXT ...] [--fields title,text ...]
        [--model ID ...] [--cpu-quantization none dynamic_int8]
        [--es-url URL] [--sidecar-url URL] [--out DIR] [--write-docs]

Steps:

1. A BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``, header row
   optional) is loaded into an index (one shard, ``title`` and ``text`` as text), unless the
   index already holds that many documents. ES is ``--es-url`` or a local ES-compatible
   server the tool starts (and stops).
2. Each judged query is sent as a ``multi_match`` on ``--query-fields`` with ``size`` =
   max(100, window): once straight to ES (the BM25 baseline) and once through the sidecar
   per configuration. With window W the sidecar's hits are the top W reranked, then the rest
   in ES order, so Recall@W and Recall@100 show that no hit was lost on the way.
3. nDCG@10 (gain 2^rel - 1, log2 discount, ideal from all judged documents), MRR@10,
   Recall@W and Recall@100 per query and on average; per-query wins/losses/ties and a
   seeded paired randomization (sign-flip) test of the nDCG@10 difference.
4. A report in ``--out``: ``report.md`` (the table), ``results.json`` (every per-query
   number), one PNG per configuration (per-query nDCG@10 deltas, sorted); the table is also
   printed. ``--write-docs`` puts the table into docs/benchmarks.md (``devtools.eval.report``).

Sweeps: every option that takes several values is swept and all combinations run, one row
each. Request-level options (window, instruction, fields) are sent per request in the
``rerank`` object; server-level options (model, score mode and fusion weight, CPU
quantization) each get a sidecar process of their own, started by the tool with the model
stage given all the time it needs (``rerank.budget_ms`` 10 minutes), so that every query is
really reranked. With ``--sidecar-url`` the running sidecar is used as configured, and only
request-level options can be swept. Any query that was not reranked (``X-Rerank`` other
than applied/cached) is counted in the ``reranked`` column and flagged.

Those rows are the *ceiling*: what the model can do with all the time it needs. Beside
them the harness reports each configuration **as served** (unless ``--no-as-served``): a
sidecar with the configured budget and every other setting at its default (or as
``--config`` sets it), its queries sent ``--as-served-concurrency`` at a time (default 1).
Its searches are reranked as far as the budget allows (``X-Rerank: applied; window=K``) or
fall back to ES order, so its nDCG@10 is the relevance a user gets on this hardware; the
report puts it next to the ceiling and BM25, with the share of searches reranked, the mean
K and the latency per search.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

from devtools.eval.data import EvalSet, load_corpus, read_eval_set
from devtools.eval.ranking import NDCG_K, RECALL_DEPTH, query_metrics
from devtools.eval.stats import DEFAULT_PERMUTATIONS, DEFAULT_SEED, Paired, compare
from es_integration.local_es import LocalES
from es_integration.sidecar_proc import SidecarProcess
from sidecar.config import LimitsTuning, build_config, merge, read_yaml

BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_DATASET = Path(__file__).resolve().parents[3] / "shared" / "data" / "msmarco-dl-5k"
#: The model stage of a sidecar the tool starts: long enough that no query falls back.
EVAL_BUDGET_MS = 600_000
RERANKED = ("applied", "cached")


# --- what is swept -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerVariant:
    """Settings that need a sidecar process of their own."""

    model: str | None
    quantization: str = "none"
    dtype: str = "auto"
    score_mode: str = "replace"
    fusion_weight: float | None = None
    #: The configured budget and default settings, instead of all the time it needs.
    as_served: bool = False

    @property
    def precision(self) -> str:
        if self.quantization == "dynamic_int8":
            return "int8"
        return {"bfloat16": "bf16", "float16": "fp16"}.get(self.dtype, "fp32")

    def fp32_twin(self) -> ServerVariant:
        return replace(self, quantization="none", dtype="auto")

    def served(self) -> ServerVariant:
        return replace(self, as_served=True)

    def ceiling(self) -> ServerVariant:
        return replace(self, as_served=False)

    def config(self, max_window: int) -> dict[str, Any]:
        """The sidecar's config for this variant (over ``Settings.config_file``, if any).
        As served, the budget, the timeouts and the load settings are left as configured."""
        # The annotations say how many hits were reranked (``Judged.reranked``).
        rerank: dict[str, Any] = {"score_mode": self.score_mode, "annotate": True}
        limits: dict[str, Any] = {}
        if not self.as_served:
            rerank["budget_ms"] = EVAL_BUDGET_MS
            limits["max_window"] = max(500, max_window)
        elif max_window > LimitsTuning().max_window:
            limits["max_window"] = max_window
        if self.score_mode == "fusion" and self.fusion_weight is not None:
            rerank["fusion"] = {
                "rerank_weight": self.fusion_weight,
                "bm25_weight": round(1.0 - self.fusion_weight, 10),
            }
        config: dict[str, Any] = {
            "server": {"access_log": False},
            "rollout": {"default": "on"},
            "rerank": rerank,
            "model": {"cpu_quantization": self.quantization, "dtype": self.dtype},
        }
        if not self.as_served:
            config["es"] = {"timeouts": {"read_s": 120}}
        if limits:
            config["tuning"] = {"limits": limits}
        return config


@dataclass(frozen=True)
class RequestVariant:
    """Settings sent with each search in the ``rerank`` object."""

    window: int
    instruction: str | None = None
    fields: tuple[str, ...] | None = None

    def rerank_object(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"window": self.window}
        if self.instruction is not None:
            obj["instruction"] = self.instruction
        if self.fields is not None:
            obj["fields"] = list(self.fields)
        return obj


@dataclass
class Settings:
    dataset: Path = DEFAULT_DATASET
    index: str | None = None
    query_fields: tuple[str, ...] = ("title", "text")
    windows: tuple[int, ...] = (20,)
    instructions: tuple[str | None, ...] = (None,)
    fields: tuple[tuple[str, ...] | None, ...] = (None,)
    score_modes: tuple[str, ...] = ("replace",)
    fusion_weights: tuple[float, ...] = (0.7,)
    models: tuple[str, ...] = (BUNDLED_MODEL,)
    quantizations: tuple[str, ...] = ("none",)
    dtypes: tuple[str, ...] = ("auto",)
    config_file: Path | None = None
    es_url: str | None = None
    sidecar_url: str | None = None
    concurrency: int = 2
    permutations: int = DEFAULT_PERMUTATIONS
    seed: int = DEFAULT_SEED
    max_queries: int | None = None
    reload: bool = False
    progress: bool = True
    work_dir: Path | None = None
    #: Also run every configuration as served (configured budget, default settings).
    as_served: bool = True
    #: Searches in flight for the as-served runs (1: one user at a time).
    as_served_concurrency: int = 1

    @property
    def index_name(self) -> str:
        return self.index or self.dataset.name.replace(".", "-").lower()

    @property
    def size(self) -> int:
        return max(RECALL_DEPTH, *self.windows)

    def server_variants(self) -> list[ServerVariant]:
        if self.sidecar_url:
            return [ServerVariant(model=None, quantization="", dtype="", score_mode="")]
        modes: list[tuple[str, float | None]] = []
        for mode in dict.fromkeys(self.score_modes):
            if mode == "fusion":
                modes += [("fusion", w) for w in dict.fromkeys(self.fusion_weights)]
            else:
                modes.append((mode, None))
        return [
            ServerVariant(model, quant, dtype, mode, weight)
            for model in dict.fromkeys(self.models)
            for quant in dict.fromkeys(self.quantizations)
            for dtype in dict.fromkeys(self.dtypes)
            for mode, weight in modes
            # int8 quantization runs on fp32 weights whatever the dtype: one row is enough.
            if quant == "none" or dtype == self.dtypes[0]
        ]

    def served_variants(self) -> list[ServerVariant]:
        """The as-served twin of every configuration (none with ``--sidecar-url``: the
        running sidecar is used as configured already)."""
        if self.sidecar_url or not self.as_served:
            return []
        return [v.served() for v in self.server_variants()]

    def served_budget_ms(self) -> float:
        """``rerank.budget_ms`` of an as-served sidecar: ``--config``'s, else the default."""
        tree: dict[str, Any] = read_yaml(self.config_file) if self.config_file else {}
        probe = ServerVariant(BUNDLED_MODEL, as_served=True).config(max(self.windows))
        return float(build_config(merge(tree, probe)).rerank.budget_ms)

    def request_variants(self) -> list[RequestVariant]:
        return [
            RequestVariant(w, instruction, fields)
            for w, instruction, fields in itertools.product(
                dict.fromkeys(self.windows),
                dict.fromkeys(self.instructions),
                dict.fromkeys(self.fields),
            )
        ]


# --- results -------------------------------------------------------------------------------


@dataclass
class Ranked:
    ids: list[str]
    outcome: str = ""
    #: Hits the sidecar reranked (``_rerank.reranked``; 0 when none were).
    k: int = 0
    #: Seconds from sending the search to its whole answer.
    latency_s: float = 0.0


@dataclass
class RunResult:
    label: str
    server: ServerVariant
    request: RequestVariant
    #: qid -> metric -> value, for the sidecar's ranking and for BM25 at the same window.
    per_query: dict[str, dict[str, float]]
    baseline: dict[str, dict[str, float]]
    outcomes: dict[str, str]
    top: dict[str, list[str]]
    seconds: float
    paired: Paired = field(init=False)
    permutations: int = DEFAULT_PERMUTATIONS
    seed: int = DEFAULT_SEED
    #: qid -> hits reranked, and seconds per search.
    ks: dict[str, int] = field(default_factory=dict)
    latencies: dict[str, float] = field(default_factory=dict)
    #: The machine's 1-minute load average when the run ended (other processes slow an
    #: as-served run's model, and with it what the budget allows).
    load_1m: float | None = None

    def __post_init__(self) -> None:
        key = f"ndcg@{NDCG_K}"
        qids = list(self.per_query)
        self.paired = compare(
            [self.baseline[q][key] for q in qids],
            [self.per_query[q][key] for q in qids],
            permutations=self.permutations,
            seed=self.seed,
        )

    def mean(self, metric: str, *, baseline: bool = False) -> float:
        source = self.baseline if baseline else self.per_query
        values = [m[metric] for m in source.values()]
        return sum(values) / len(values) if values else float("nan")

    @property
    def reranked(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.split(";")[0].strip() in RERANKED)

    def outcome_counts(self) -> dict[str, int]:
        return dict(Counter(self.outcomes.values()))

    @property
    def mean_k(self) -> float:
        """Mean hits reranked, over the searches that were reranked."""
        ks = [k for k in self.ks.values() if k > 0]
        return sum(ks) / len(ks) if ks else 0.0

    def latency(self, q: float) -> float:
        data = sorted(self.latencies.values())
        if not data:
            return float("nan")
        return data[min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))]


@dataclass(frozen=True)
class QuantComparison:
    """An int8 or half-precision configuration against its fp32 twin (same everything
    else)."""

    label: str
    fp32: float
    quantized: float
    paired: Paired


@dataclass
class EvalReport:
    settings: Settings
    data: EvalSet
    index: str
    es_url: str
    sidecar_url: str | None
    baseline_top: dict[str, list[str]]
    baseline_seconds: float
    runs: list[RunResult]
    started: float
    finished: float
    quantization: list[QuantComparison] = field(default_factory=list)
    #: Every configuration as served (configured budget, default settings), in the order
    #: of ``runs``, and the budget they ran with.
    as_served: list[RunResult] = field(default_factory=list)
    served_budget_ms: float | None = None

    def ceiling_of(self, served: RunResult) -> RunResult | None:
        """The run of the same configuration with all the time it needs."""
        twin = served.server.ceiling()
        return next(
            (r for r in self.runs if r.server == twin and r.request == served.request), None
        )


# --- running queries -----------------------------------------------------------------------


def search_body(
    text: str, query_fields: Sequence[str], size: int, rerank: dict[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "query": {"multi_match": {"query": text, "fields": list(query_fields)}},
        "size": size,
        "_source": False,
    }
    if rerank is not None:
        body["rerank"] = rerank
    return body


async def run_queries(
    url: str,
    index: str,
    queries: dict[str, str],
    *,
    query_fields: Sequence[str],
    size: int,
    rerank: dict[str, Any] | None,
    concurrency: int,
    desc: str,
    progress: bool,
) -> tuple[dict[str, Ranked], float]:
    """Every query through ``url``; returns the rankings and the seconds it took."""
    results: dict[str, Ranked] = {}
    semaphore = asyncio.Semaphore(max(1, concurrency))
    timeout = aiohttp.ClientTimeout(total=EVAL_BUDGET_MS / 1000 + 60)
    started = time.perf_counter()
    with tqdm(
        total=len(queries), desc=desc, unit="q", disable=not progress, file=sys.stderr, leave=False
    ) as bar:
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(qid: str, text: str) -> None:
                body = search_body(text, query_fields, size, rerank)
                async with semaphore:
                    t0 = time.perf_counter()
                    async with session.post(f"{url}/{index}/_search", json=body) as resp:
                        payload = await resp.json(content_type=None)
                        if resp.status != 200:
                            raise RuntimeError(
                                f"{url}: query {qid!r} answered {resp.status}: {str(payload)[:300]}"
                            )
                        hits = payload["hits"]["hits"]
                        outcome = resp.headers.get("X-Rerank", "")
                    latency = time.perf_counter() - t0
                status = payload.get("_rerank") if isinstance(payload, dict) else None
                k = int(status.get("reranked") or 0) if isinstance(status, dict) else 0
                results[qid] = Ranked([str(h["_id"]) for h in hits], outcome, k, latency)
                bar.update(1)

            await asyncio.gather(*(one(q, t) for q, t in queries.items()))
    seconds = time.perf_counter() - started
    return {q: results[q] for q in queries}, seconds


# --- labels --------------------------------------------------------------------------------


def _short_model(name: str | None) -> str:
    if name is None:
        return "as configured"
    return name.rstrip("/").rsplit("/", 1)[-1]


def _short(text: str, n: int = 32) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def run_label(server: ServerVariant, request: RequestVariant, settings: Settings) -> str:
    parts: list[str] = []
    if len(set(settings.models)) > 1:
        parts.append(_short_model(server.model))
    varies = len(set(settings.quantizations)) > 1 or len(set(settings.dtypes)) > 1
    if server.quantization != "" and (varies or server.precision != "fp32"):
        parts.append(server.precision)
    if server.score_mode == "fusion":
        parts.append(f"fusion {server.fusion_weight:g}/{1 - (server.fusion_weight or 0):g}")
    elif len(set(settings.score_modes)) > 1:
        parts.append("replace")
    parts.append(f"W={request.window}")
    if request.instruction is not None:
        parts.append(f"instr={_short(request.instruction)!r}")
    if request.fields is not None:
        parts.append("fields=" + "+".join(request.fields))
    if server.as_served:
        parts.append("as served")
    return ", ".join(parts)


# --- the evaluation ------------------------------------------------------------------------


@contextlib.contextmanager
def _elasticsearch(settings: Settings, work: Path) -> Iterator[str]:
    if settings.es_url:
        yield settings.es_url.rstrip("/")
        return
    _say(settings, "starting a local ES-compatible server (noida-db) ...")
    with LocalES.start(data_dir=work / "es") as es:
        yield es.url


@contextlib.contextmanager
def _sidecar(
    settings: Settings, es_url: str, variant: ServerVariant, work: Path, n: int
) -> Iterator[str]:
    if settings.sidecar_url:
        yield settings.sidecar_url.rstrip("/")
        return
    _say(
        settings,
        f"starting a sidecar: model {variant.model}, {variant.precision}, "
        f"score mode {variant.score_mode}"
        + (f" {variant.fusion_weight:g}" if variant.fusion_weight is not None else "")
        + (", as served" if variant.as_served else ""),
    )
    with SidecarProcess.start(
        es_url,
        log_path=work / f"sidecar-{n}.log",
        model=variant.model,
        config=variant.config(max(settings.windows)),
        config_file=settings.config_file,
        wait_ready=True,
        timeout=900,
    ) as sc:
        yield sc.url


def _load_1m() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _say(settings: Settings, text: str) -> None:
    if settings.progress:
        print(text, file=sys.stderr, flush=True)


def _check(settings: Settings) -> None:
    if any(w < 1 for w in settings.windows):
        raise ValueError("--window values must be positive")
    if any(not 0 <= w <= 1 for w in settings.fusion_weights):
        raise ValueError("--fusion-weight values must be within [0, 1]")
    if settings.as_served_concurrency < 1:
        raise ValueError("--as-served-concurrency must be at least 1")
    if settings.sidecar_url:
        server_side = {
            "--model": settings.models != (BUNDLED_MODEL,),
            "--score-mode": settings.score_modes != ("replace",),
            "--cpu-quantization": settings.quantizations != ("none",),
            "--dtype": settings.dtypes != ("auto",),
            "--config": settings.config_file is not None,
        }
        named = [flag for flag, given in server_side.items() if given]
        if named:
            raise ValueError(
                f"{', '.join(named)} configure a sidecar the tool starts; with --sidecar-url "
                "the running sidecar is used as it is configured"
            )


def evaluate(settings: Settings) -> EvalReport:
    _check(settings)
    data = read_eval_set(settings.dataset, settings.max_queries)
    started = time.time()
    with contextlib.ExitStack() as stack:
        work = settings.work_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="eval-"))
        )
        work.mkdir(parents=True, exist_ok=True)
        es_url = stack.enter_context(_elasticsearch(settings, work))
        index = settings.index_name
        count, loaded = load_corpus(
            es_url, data, index, reload=settings.reload, progress=settings.progress
        )
        _say(settings, f"index {index}: {count} documents ({'loaded' if loaded else 'kept'})")

        baseline, base_seconds = asyncio.run(
            run_queries(
                es_url,
                index,
                data.queries,
                rerank=None,
                concurrency=settings.concurrency,
                desc="BM25 (straight to ES)",
                progress=settings.progress,
                query_fields=settings.query_fields,
                size=settings.size,
            )
        )
        runs: list[RunResult] = []
        served: list[RunResult] = []
        ceilings = settings.server_variants()
        for n, server in enumerate(ceilings + settings.served_variants()):
            into = served if server.as_served else runs
            concurrency = (
                settings.as_served_concurrency if server.as_served else settings.concurrency
            )
            with _sidecar(settings, es_url, server, work, n) as sidecar_url:
                for request in settings.request_variants():
                    label = run_label(server, request, settings)
                    ranked, seconds = asyncio.run(
                        run_queries(
                            sidecar_url,
                            index,
                            data.queries,
                            rerank=request.rerank_object(),
                            concurrency=concurrency,
                            desc=label,
                            progress=settings.progress,
                            query_fields=settings.query_fields,
                            size=settings.size,
                        )
                    )
                    into.append(
                        _result(label, server, request, data, baseline, ranked, seconds, settings)
                    )
                    into[-1].load_1m = _load_1m()
                    _say(settings, f"{label}: nDCG@10 {into[-1].mean(f'ndcg@{NDCG_K}'):.4f}")
        report = EvalReport(
            settings=settings,
            data=data,
            index=index,
            es_url=es_url,
            sidecar_url=settings.sidecar_url,
            baseline_top={q: r.ids[:NDCG_K] for q, r in baseline.items()},
            baseline_seconds=base_seconds,
            runs=runs,
            started=started,
            finished=time.time(),
            as_served=served,
            served_budget_ms=settings.served_budget_ms() if served else None,
        )
    report.quantization = quantization_comparisons(report)
    return report


def _result(
    label: str,
    server: ServerVariant,
    request: RequestVariant,
    data: EvalSet,
    baseline: dict[str, Ranked],
    ranked: dict[str, Ranked],
    seconds: float,
    settings: Settings,
) -> RunResult:
    w = request.window
    return RunResult(
        label=label,
        server=server,
        request=request,
        per_query={q: query_metrics(ranked[q].ids, data.qrels[q], w) for q in data.queries},
        baseline={q: query_metrics(baseline[q].ids, data.qrels[q], w) for q in data.queries},
        outcomes={q: ranked[q].outcome for q in data.queries},
        top={q: ranked[q].ids[:NDCG_K] for q in data.queries},
        seconds=seconds,
        permutations=settings.permutations,
        seed=settings.seed,
        ks={q: ranked[q].k for q in data.queries},
        latencies={q: ranked[q].latency_s for q in data.queries},
    )


def quantization_comparisons(report: EvalReport) -> list[QuantComparison]:
    key = f"ndcg@{NDCG_K}"
    out: list[QuantComparison] = []
    for run in report.runs:
        if run.server.quantization == "" or run.server.precision == "fp32":
            continue
        twin_server = run.server.fp32_twin()
        twin = next(
            (r for r in report.runs if r.server == twin_server and r.request == run.request),
            None,
        )
        if twin is None:
            continue
        qids = list(run.per_query)
        paired = compare(
            [twin.per_query[q][key] for q in qids],
            [run.per_query[q][key] for q in qids],
            permutations=report.settings.permutations,
            seed=report.settings.seed,
        )
        out.append(QuantComparison(run.label, twin.mean(key), run.mean(key), paired))
    return out


def as_dict(settings: Settings) -> dict[str, Any]:
    data = asdict(settings)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
