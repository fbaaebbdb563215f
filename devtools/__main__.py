"""``python -m devtools TOOL ARGS``: the same as ``python -m devtools.TOOL ARGS``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

TOOLS = {
    "eval": ("devtools.eval.cli", "relevance: ES vs through the sidecar"),
    "bench": ("devtools.bench.suite", "the benchmark suite"),
    "soak": ("devtools.soak", "mixed load with faults, RSS report"),
    "fakes": ("devtools.fakes", "a fault-injecting ES or model server"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in TOOLS:
        print("usage: python -m devtools {" + ",".join(TOOLS) + "} ...", file=sys.stderr)
        for name, (_, what) in TOOLS.items():
            print(f"  {name:<6} {what}", file=sys.stderr)
        return 2
    tool: Callable[[list[str]], int] = importlib.import_module(TOOLS[argv[0]][0]).main
    return tool(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
