"""The evaluation report: markdown table, per-query JSON, delta plots, and its section of
docs/benchmarks.md."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devtools.docs_sections import replace_section
from devtools.eval.ranking import MRR_K, NDCG_K, RECALL_DEPTH
from devtools.eval.run import EvalReport, RunResult, as_dict
from devtools.machine import load_average, machine_description, now_text

#: The quality loss int8 quantization may cost (nDCG@10, absolute).
QUANT_LOSS_GOAL = 0.005
#: As served, nDCG@10 may fall this far below the ceiling (absolute), and never below BM25.
SERVED_LOSS_GOAL = 0.02


# --- tables --------------------------------------------------------------------------------


def _p(value: float) -> str:
    return f"{value:.4f}" if value >= 0.0001 else f"{value:.1e}"


def _with_delta(value: float, base: float) -> str:
    delta = value - base
    return f"{value:.4f} (=)" if abs(delta) < 5e-5 else f"{value:.4f} ({delta:+.4f})"


def results_table(report: EvalReport) -> str:
    ndcg, mrr, depth = f"ndcg@{NDCG_K}", f"mrr@{MRR_K}", f"recall@{RECALL_DEPTH}"
    n = len(report.data.queries)
    lines = [
        f"| ranking | nDCG@{NDCG_K} | Δ nDCG@{NDCG_K} | W/L/T | p | MRR@{MRR_K} | R@W | "
        f"R@{RECALL_DEPTH} | reranked | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = report.runs[0] if report.runs else None
    if first is not None:
        lines.append(
            f"| BM25 (straight to ES) | {first.mean(ndcg, baseline=True):.4f} | | | | "
            f"{first.mean(mrr, baseline=True):.4f} | | "
            f"{first.mean(depth, baseline=True):.4f} | | {report.baseline_seconds:.1f} |"
        )
    for run in report.runs:
        w = run.request.window
        rw = f"recall@{w}"
        flag = "" if run.reranked == n else " ⚠"
        lines.append(
            f"| {run.label} | {run.mean(ndcg):.4f} | {run.paired.mean_delta:+.4f} | "
            f"{run.paired.wlt} | {_p(run.paired.p_value)} | "
            f"{_with_delta(run.mean(mrr), run.mean(mrr, baseline=True))} | "
            f"R@{w} {_with_delta(run.mean(rw), run.mean(rw, baseline=True))} | "
            f"{_with_delta(run.mean(depth), run.mean(depth, baseline=True))} | "
            f"{run.reranked}/{n}{flag} | {run.seconds:.1f} |"
        )
    return "\n".join(lines)


def quantization_table(report: EvalReport) -> str:
    if not report.quantization:
        return ""
    lines = [
        f"| configuration | nDCG@{NDCG_K} fp32 | nDCG@{NDCG_K} faster path | Δ | W/L/T | p | "
        f"goal: loss ≤ {QUANT_LOSS_GOAL} |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report.quantization:
        loss = c.fp32 - c.quantized
        verdict = "met" if loss <= QUANT_LOSS_GOAL + 1e-12 else f"missed (loss {loss:.4f})"
        lines.append(
            f"| {c.label} | {c.fp32:.4f} | {c.quantized:.4f} | {c.paired.mean_delta:+.4f} | "
            f"{c.paired.wlt} | {_p(c.paired.p_value)} | {verdict} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class ServedComparison:
    """One configuration as served against its ceiling and BM25."""

    label: str
    bm25: float
    ceiling: float | None
    served: float
    reranked: int
    queries: int
    mean_k: float
    window: int
    p50_s: float
    p99_s: float
    outcomes: dict[str, int]
    load_1m: float | None = None

    @property
    def at_least_bm25(self) -> bool:
        return self.served >= self.bm25 - 1e-12

    @property
    def near_ceiling(self) -> bool | None:
        if self.ceiling is None:
            return None
        return self.ceiling - self.served <= SERVED_LOSS_GOAL + 1e-12


def served_comparisons(report: EvalReport) -> list[ServedComparison]:
    ndcg = f"ndcg@{NDCG_K}"
    out: list[ServedComparison] = []
    for run in report.as_served:
        twin = report.ceiling_of(run)
        out.append(
            ServedComparison(
                label=run.label,
                bm25=run.mean(ndcg, baseline=True),
                ceiling=twin.mean(ndcg) if twin is not None else None,
                served=run.mean(ndcg),
                reranked=run.reranked,
                queries=len(run.outcomes),
                mean_k=run.mean_k,
                window=run.request.window,
                p50_s=run.latency(50),
                p99_s=run.latency(99),
                outcomes=run.outcome_counts(),
                load_1m=run.load_1m,
            )
        )
    return out


def _outcome_text(counts: dict[str, int]) -> str:
    merged: dict[str, int] = {}
    for header, n in counts.items():
        key = "applied; window=K" if header.startswith("applied; window=") else header or "—"
        merged[key] = merged.get(key, 0) + n
    return ", ".join(f"{k} {v}" for k, v in sorted(merged.items(), key=lambda kv: -kv[1]))


def served_table(report: EvalReport) -> str:
    comparisons = served_comparisons(report)
    if not comparisons:
        return ""
    budget = f"{report.served_budget_ms:.0f} ms" if report.served_budget_ms else "configured"
    lines = [
        f"| configuration | budget | nDCG@{NDCG_K} BM25 | ceiling | as served | Δ vs ceiling | "
        f"reranked (any K) | mean K | p50 / p99 s per search | X-Rerank | load (1 min) | "
        f"goal: ≥ BM25 | goal: within {SERVED_LOSS_GOAL} of the ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        ceiling = f"{c.ceiling:.4f}" if c.ceiling is not None else "—"
        delta = f"{c.served - c.ceiling:+.4f}" if c.ceiling is not None else "—"
        near = c.near_ceiling
        near_text = "n/a" if near is None else "met" if near else "**missed**"
        lines.append(
            f"| {c.label} | {budget} | {c.bm25:.4f} | {ceiling} | {c.served:.4f} | {delta} | "
            f"{c.reranked}/{c.queries} | {c.mean_k:.1f} of {c.window} | "
            f"{c.p50_s:.2f} / {c.p99_s:.2f} | {_outcome_text(c.outcomes)} | "
            f"{f'{c.load_1m:.1f}' if c.load_1m is not None else 'n/a'} | "
            f"{'met' if c.at_least_bm25 else '**missed**'} | {near_text} |"
        )
    return "\n".join(lines)


def _notes(report: EvalReport) -> str:
    s = report.settings
    n = len(report.data.queries)
    sidecar = (
        f"the running sidecar at {report.sidecar_url}, as configured"
        if report.sidecar_url
        else "a sidecar process per configuration, started by the tool (rerank.budget_ms "
        "600000, so no query falls back)"
    )
    return "\n".join(
        [
            f"* {n} judged queries; each a `multi_match` on {', '.join(s.query_fields)}, "
            f"`size` {s.size}, sent straight to ES (BM25) and through {sidecar}.",
            f"* nDCG@{NDCG_K}: gain 2^rel − 1, log2 discount, ideal from all judged documents; "
            f"MRR@{MRR_K}; R@W = Recall at the rerank window, R@{RECALL_DEPTH} = Recall at "
            f"{RECALL_DEPTH} (the sidecar returns the top W reranked, then ES order, so both "
            "equal BM25's unless a hit was lost). Unjudged documents count as non-relevant.",
            f"* W/L/T: queries whose nDCG@{NDCG_K} went up/down/stayed against BM25. p: paired "
            f"randomization (sign-flip) test of the mean nDCG@{NDCG_K} difference, two-sided, "
            f"{s.permutations:,} permutations, seed {s.seed}.",
            "* reranked: searches the sidecar answered with `X-Rerank: applied` or `cached`; "
            "⚠ marks a row where some were not (their ES order was scored).",
        ]
        + (
            [
                f"* As served: the same configuration in a sidecar with the configured budget "
                f"(`rerank.budget_ms` {report.served_budget_ms:.0f}) and every other setting "
                + ("as in the config file" if s.config_file else "at its default")
                + f", searches sent {s.as_served_concurrency} at a time. A search is reranked "
                "as far as the budget allows (`applied; window=K`: the top K, the rest in ES "
                "order) or keeps ES order (`fallback`); its nDCG@10 is scored either way. "
                "Latency: from sending the search to its whole answer, ES included. Load: "
                "the machine's 1-minute load average as the run ended (other processes "
                "slow the model, and with it what the budget allows)."
            ]
            if report.as_served and report.served_budget_ms is not None
            else []
        )
    )


def markdown(report: EvalReport, *, heading: str = "#", plots: list[Path] | None = None) -> str:
    s = report.settings
    lines = [
        f"{heading} Relevance: {report.data.name}, {len(report.data.queries)} judged queries",
        "",
        f"Measured {now_text(report.finished)} on {machine_description()}. "
        f"Load average at the end: {load_average()}. Index `{report.index}` in "
        + (
            report.es_url
            if s.es_url
            else "a local ES-compatible server (noida-db, default settings) the tool started"
        )
        + "; models: "
        + (
            f"as configured in the sidecar at {report.sidecar_url}"
            if report.sidecar_url
            else ", ".join(dict.fromkeys(s.models))
        )
        + ".",
        "",
        results_table(report),
        "",
    ]
    served = served_table(report)
    if served:
        lines += [
            f"{heading}# As served: the configured budget on this machine, beside the ceiling",
            "",
            served,
            "",
        ]
    lines += [_notes(report)]
    quant = quantization_table(report)
    if quant:
        lines += [
            "",
            f"{heading}# CPU speed-up paths (int8, bf16): quality against fp32",
            "",
            "Each row's twin is the same configuration in fp32; W/L/T and p compare the two "
            "per query.",
            "",
            quant,
        ]
    if plots:
        lines += ["", f"{heading}# Per-query nDCG@{NDCG_K} deltas", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


# --- plot ----------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "run"


def plot_deltas(run: RunResult, path: Path) -> Path:
    """Bars of per-query nDCG@10 deltas (reranked - BM25), sorted, with the summary."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    key = f"ndcg@{NDCG_K}"
    deltas = sorted(
        (run.per_query[q][key] - run.baseline[q][key] for q in run.per_query), reverse=True
    )
    colors = ["#2e7d32" if d > 1e-9 else "#c62828" if d < -1e-9 else "#9e9e9e" for d in deltas]
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(range(len(deltas)), deltas, color=colors, width=0.85)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"queries, sorted by Δ nDCG@{NDCG_K} ({len(deltas)})")
    ax.set_ylabel(f"Δ nDCG@{NDCG_K} (reranked − BM25)")
    base, after = run.mean(key, baseline=True), run.mean(key)
    ax.set_title(
        f"{run.label}: nDCG@{NDCG_K} {base:.4f} → {after:.4f} ({after - base:+.4f}), "
        f"p = {_p(run.paired.p_value)}",
        fontsize=10,
    )
    ax.legend(
        handles=[
            Patch(color="#2e7d32", label=f"better: {run.paired.wins}"),
            Patch(color="#c62828", label=f"worse: {run.paired.losses}"),
            Patch(color="#9e9e9e", label=f"tied: {run.paired.ties}"),
        ],
        loc="upper right",
        fontsize=9,
    )
    ax.set_xlim(-0.6, len(deltas) - 0.4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# --- files ---------------------------------------------------------------------------------


def _run_json(run: RunResult) -> dict[str, Any]:
    metrics = list(next(iter(run.per_query.values()), {}))
    return {
        "label": run.label,
        "server": asdict(run.server),
        "request": asdict(run.request),
        "seconds": run.seconds,
        "reranked": run.reranked,
        "mean_k": run.mean_k,
        "load_1m": run.load_1m,
        "latency_p50_s": run.latency(50),
        "latency_p99_s": run.latency(99),
        "outcomes": run.outcome_counts(),
        "mean": {m: run.mean(m) for m in metrics},
        "bm25_mean": {m: run.mean(m, baseline=True) for m in metrics},
        f"ndcg@{NDCG_K}_vs_bm25": asdict(run.paired),
        "per_query": {
            q: {
                **run.per_query[q],
                "bm25": run.baseline[q],
                "outcome": run.outcomes[q],
                "reranked": run.ks.get(q, 0),
                "latency_s": run.latencies.get(q),
                "top": run.top[q],
            }
            for q in run.per_query
        },
    }


def report_json(report: EvalReport) -> dict[str, Any]:
    return {
        "dataset": str(report.data.path),
        "index": report.index,
        "es_url": report.es_url,
        "sidecar_url": report.sidecar_url,
        "started": now_text(report.started),
        "finished": now_text(report.finished),
        "machine": machine_description(),
        "load_average": load_average(),
        "settings": as_dict(report.settings),
        "queries": report.data.queries,
        "bm25": {"seconds": report.baseline_seconds, "top": report.baseline_top},
        "runs": [_run_json(r) for r in report.runs],
        "quantization": [
            {"label": c.label, "fp32": c.fp32, "other": c.quantized, "paired": asdict(c.paired)}
            for c in report.quantization
        ],
        "as_served": {
            "budget_ms": report.served_budget_ms,
            "concurrency": report.settings.as_served_concurrency,
            "runs": [_run_json(r) for r in report.as_served],
            "comparisons": [
                {
                    **asdict(c),
                    "at_least_bm25": c.at_least_bm25,
                    "within_goal_of_ceiling": c.near_ceiling,
                }
                for c in served_comparisons(report)
            ],
        },
    }


@dataclass
class ReportPaths:
    markdown: Path
    json: Path
    table: str
    plots: list[Path] = field(default_factory=list)


def write_report(report: EvalReport, out: Path) -> ReportPaths:
    out.mkdir(parents=True, exist_ok=True)
    plots = [
        plot_deltas(run, out / f"ndcg{NDCG_K}-delta-{i:02d}-{_slug(run.label)}.png")
        for i, run in enumerate(report.runs)
    ]
    md = out / "report.md"
    md.write_text(markdown(report, plots=plots), encoding="utf-8")
    js = out / "results.json"
    js.write_text(json.dumps(report_json(report), indent=1, ensure_ascii=False), encoding="utf-8")
    table = results_table(report)
    served = served_table(report)
    if served:
        table += "\n\nAs served (configured budget, default settings):\n\n" + served
    quant = quantization_table(report)
    if quant:
        table += "\n\n" + quant
    return ReportPaths(md, js, table, plots)


def update_docs(path: Path, report: EvalReport) -> None:
    text = markdown(report, heading="##")
    text += (
        "\nGenerated by `python -m devtools.eval --write-docs` (per-query numbers and "
        "plots: `--out`).\n"
    )
    replace_section(path, f"eval {report.data.name}", text)
