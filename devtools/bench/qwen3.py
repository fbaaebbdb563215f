"""``python -m devtools.bench.qwen3``: scenario 7 on its own (Qwen3-Reranker-0.6B's
architecture on this CPU), with its own section in docs/benchmarks.md.

    python -m devtools.bench.qwen3 [--quick] [--layers N] [--write-docs [PATH]]

The full suite (``python -m devtools.bench``) runs it too, as scenario 7.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

from devtools.bench.results import summary_table
from devtools.bench.scenarios import qwen3
from devtools.bench.servers import Bench
from devtools.docs_sections import DOCS_PATH, replace_section
from devtools.machine import load_average, machine_description, now_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench.qwen3", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer searches and rounds")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (of 28)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="interleaved rounds (default 3, --quick 2); more on a busy machine",
    )
    parser.add_argument(
        "--write-docs",
        nargs="?",
        const=DOCS_PATH,
        type=Path,
        help="put the section in docs/benchmarks.md (or this file), section bench-qwen3",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.time()
    before = load_average()
    print(f"machine: {machine_description()}\nload average: {before}", flush=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-qwen3-")))
        bench = Bench(quick=args.quick, work=work, stack=stack)
        sec = qwen3.run(bench, layers=args.layers, rounds=args.rounds)
    sec.seconds = time.time() - started
    after = load_average()
    command = "python -m devtools.bench.qwen3" + (" --quick" if args.quick else "")
    if args.layers != 2:
        command += f" --layers {args.layers}"
    if args.rounds:
        command += f" --rounds {args.rounds}"
    text = "\n".join(
        [
            "## Qwen3-Reranker on this CPU",
            "",
            f"Measured {now_text(started)} on {machine_description()}. Run: `{command}` "
            f"({sec.seconds / 60:.1f} min). Load average before: {before}; after: {after}. "
            "Contenders run in interleaved rounds, so load from other processes slows them "
            "alike.",
            "",
            summary_table([sec]),
            "",
            sec.markdown(),
        ]
    )
    print("\n" + text)
    if args.write_docs:
        replace_section(args.write_docs, "bench-qwen3", text, before="eval")
        print(f"updated {args.write_docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
