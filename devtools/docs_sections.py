"""The generated sections of docs/benchmarks.md: each tool rewrites only its own, between
``<!-- BEGIN name -->`` and ``<!-- END name -->`` markers, and keeps everything else."""

from __future__ import annotations

import re
from pathlib import Path

DOCS_PATH = Path("docs/benchmarks.md")
DOCS_HEADER = """# Benchmarks and relevance

This file is generated; do not edit it by hand. Each section is rewritten by the tool named in
it (`python -m devtools.bench --write-docs`, `python -m devtools.eval --write-docs`) and says
when, on which machine and under which load it was measured.
"""


def replace_between(text: str, name: str, block: str) -> str:
    """``text`` with what is between ``name``'s markers replaced by ``block`` (the markers
    must be there: a generated part of a hand-written document is placed by hand)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[:start] + "\n" + block.strip() + "\n" + text[stop:]


def replace_section(path: Path, name: str, text: str, *, before: str | None = None) -> None:
    """Put ``text`` between this section's markers in ``path``.

    A new section goes before the first section whose name starts with ``before`` (if any),
    else at the end.
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}\n"
    current = path.read_text(encoding="utf-8") if path.is_file() else DOCS_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    at = current.find(f"<!-- BEGIN {before}") if before else -1
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current, count=1)
    elif at >= 0:
        updated = current[:at] + block + "\n" + current[at:]
    else:
        updated = current.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated, encoding="utf-8")
