"""``python -m devtools.eval``: the command line of the evaluation harness (``run``), which
writes its report (``report``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devtools.docs_sections import DOCS_PATH
from devtools.eval import run
from devtools.eval.report import (
    SERVED_LOSS_GOAL,
    served_comparisons,
    update_docs,
    write_report,
)
from devtools.eval.run import BUNDLED_MODEL, DEFAULT_DATASET, Settings, evaluate
from devtools.eval.stats import DEFAULT_PERMUTATIONS, DEFAULT_SEED


def _fields(value: str) -> tuple[str, ...] | None:
    if value.strip().lower() in ("", "default"):
        return None
    return tuple(f.strip() for f in value.split(",") if f.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        type=Path,
        default=DEFAULT_DATASET,
        help=f"BEIR-layout folder (default {os.path.relpath(DEFAULT_DATASET)})",
    )
    parser.add_argument("--index", help="index name (default: the folder name)")
    parser.add_argument("--reload", action="store_true", help="reload even if the index is full")
    parser.add_argument(
        "--query-fields",
        default="title,text",
        help="fields of the multi_match query, comma-separated (default title,text)",
    )
    parser.add_argument("--es-url", help="an existing ES (default: start a local one)")
    parser.add_argument("--sidecar-url", help="a running sidecar (default: start one)")
    parser.add_argument("--config", type=Path, help="config file for the sidecar the tool starts")
    parser.add_argument(
        "--model", nargs="+", default=[BUNDLED_MODEL], help="model(s) (default: bundled MiniLM)"
    )
    parser.add_argument(
        "--window", nargs="+", type=int, default=[20], help="rerank window(s) (default 20)"
    )
    parser.add_argument(
        "--instruction",
        action="append",
        help="instruction sent with each search; repeat to sweep (default: the model's)",
    )
    parser.add_argument(
        "--fields",
        action="append",
        type=_fields,
        help="document fields the model reads, comma-separated; repeat to sweep "
        "(default: the sidecar's default_fields)",
    )
    parser.add_argument(
        "--score-mode", nargs="+", choices=["replace", "fusion"], default=["replace"]
    )
    parser.add_argument(
        "--fusion-weight",
        nargs="+",
        type=float,
        default=[0.7],
        help="rerank weight(s) w in fusion mode; the BM25 weight is 1 - w (default 0.7)",
    )
    parser.add_argument(
        "--cpu-quantization",
        nargs="+",
        choices=["none", "dynamic_int8"],
        default=["none"],
        help="model.cpu_quantization value(s); int8 rows are also compared with fp32",
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=["auto", "float32", "bfloat16", "float16"],
        default=["auto"],
        help="model.dtype value(s); half-precision rows are also compared with fp32",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="searches in flight")
    parser.add_argument(
        "--as-served",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run each configuration as served: the configured budget and default "
        "settings, beside the ceiling (default: on)",
    )
    parser.add_argument(
        "--as-served-concurrency",
        type=int,
        default=1,
        help="searches in flight for the as-served runs (default 1)",
    )
    parser.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--max-queries", type=int, help="only the first N judged queries")
    parser.add_argument("--out", type=Path, help="report folder (default eval-out/<dataset>)")
    parser.add_argument(
        "--write-docs",
        nargs="?",
        const=DOCS_PATH,
        type=Path,
        help="also put the table into this markdown file (default docs/benchmarks.md)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        dataset=args.dataset,
        index=args.index,
        query_fields=tuple(f for f in args.query_fields.split(",") if f),
        windows=tuple(args.window),
        instructions=tuple(args.instruction) if args.instruction else (None,),
        fields=tuple(args.fields) if args.fields else (None,),
        score_modes=tuple(args.score_mode),
        fusion_weights=tuple(args.fusion_weight),
        models=tuple(args.model),
        quantizations=tuple(args.cpu_quantization),
        dtypes=tuple(args.dtype),
        config_file=args.config,
        es_url=args.es_url,
        sidecar_url=args.sidecar_url,
        concurrency=args.concurrency,
        permutations=args.permutations,
        seed=args.seed,
        max_queries=args.max_queries,
        reload=args.reload,
        progress=not args.quiet,
        as_served=args.as_served,
        as_served_concurrency=args.as_served_concurrency,
    )


def run_cli(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        report = evaluate(settings)
    except (ValueError, FileNotFoundError) as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("eval-out") / settings.dataset.name
    paths = write_report(report, out)
    print(paths.table)
    print(f"\nreport: {paths.markdown}\nper-query numbers: {paths.json}")
    for png in paths.plots:
        print(f"plot: {png}")
    if args.write_docs:
        update_docs(args.write_docs, report)
        print(f"updated {args.write_docs}")
    missing = sum(len(r.outcomes) - r.reranked for r in report.runs)
    if missing:
        print(f"warning: {missing} searches were not reranked (see the 'reranked' column)")
    for c in served_comparisons(report):
        near = "n/a" if c.near_ceiling is None else "met" if c.near_ceiling else "missed"
        print(
            f"as served, {c.label}: nDCG@10 {c.served:.4f} (BM25 {c.bm25:.4f}, ceiling "
            + (f"{c.ceiling:.4f}" if c.ceiling is not None else "—")
            + f"); {c.reranked}/{c.queries} reranked, mean K {c.mean_k:.1f}; goal ≥ BM25: "
            f"{'met' if c.at_least_bm25 else 'missed'}; goal within "
            f"{SERVED_LOSS_GOAL} of the ceiling: {near}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.eval", description=(run.__doc__ or "").split("\n\n")[0]
    )
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))
