"""A partial run (``--only``) updates its scenarios in docs/benchmarks.md and keeps the rest.

The benchmark section is one block: a heading paragraph (when, where, which run), the goals
table, a note, then one ``### N. title`` section per scenario. A run of some scenarios
replaces those sections and their goal rows, keeps every other scenario's as it was, and
says in each scenario section which run measured it (a kept section that does not say so
yet gets the earlier run's heading paragraph as its provenance line).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

SECTION = re.compile(r"^### (\d+)\. ", re.M)
GOALS = "### Goals"
PROVENANCE = "_Measured "
BEGIN, END = "<!-- BEGIN bench -->", "<!-- END bench -->"


@dataclass
class BenchDoc:
    #: Lines before ``### Goals`` (the heading and the paragraph saying which run).
    head: list[str] = field(default_factory=list)
    #: The goals table's header (two lines) and its rows.
    table_head: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    #: What follows the table, up to the first scenario section.
    note: list[str] = field(default_factory=list)
    #: Scenario number -> its section's text (heading included).
    sections: dict[int, str] = field(default_factory=dict)

    @property
    def run_paragraph(self) -> str:
        """The paragraph that says when and how the run was measured."""
        line = next((ln for ln in self.head if "Measured " in ln), "")
        return line[line.find("Measured ") :] if line else ""


def parse(text: str) -> BenchDoc:
    doc = BenchDoc()
    first = SECTION.search(text)
    top, rest = (text[: first.start()], text[first.start() :]) if first else (text, "")
    lines = top.strip("\n").splitlines()
    at = lines.index(GOALS) if GOALS in lines else len(lines)
    doc.head = lines[:at]
    table = lines[at + 1 :]
    i = 0
    while i < len(table) and not table[i].startswith("|"):
        i += 1
    rows = []
    while i < len(table) and table[i].startswith("|"):
        rows.append(table[i])
        i += 1
    doc.table_head, doc.rows = rows[:2], rows[2:]
    doc.note = table[i:]
    starts = [m.start() for m in SECTION.finditer(rest)] + [len(rest)]
    for a, b in itertools.pairwise(starts):
        chunk = rest[a:b].strip("\n")
        match = SECTION.match(chunk)
        assert match is not None
        number = int(match.group(1))
        # A scenario run beside a baseline has two sections of one number: keep both.
        earlier = doc.sections.get(number)
        doc.sections[number] = chunk if earlier is None else f"{earlier}\n\n{chunk}"
    return doc


def row_number(row: str) -> int | None:
    """The scenario number a goal row belongs to (its first cell starts with it)."""
    cell = row.strip().lstrip("|").split("|", 1)[0].strip()
    match = re.match(r"(\d+)\b", cell)
    return int(match.group(1)) if match else None


def with_provenance(section: str, line: str) -> str:
    """``section`` with ``line`` as its first paragraph, unless it says already which run
    measured it (a provenance line, or its own ``Measured ...`` paragraph: a scenario that
    reports its run itself keeps only that)."""
    heading, _, body = section.partition("\n")
    paragraphs = [p for p in body.strip("\n").split("\n\n") if p.strip()]
    if len(paragraphs) > 1 and paragraphs[0].startswith(PROVENANCE):
        if paragraphs[1].startswith("Measured "):
            # A provenance line above the section's own paragraph: the paragraph says it.
            return heading + "\n\n" + "\n\n".join(paragraphs[1:])
        return section
    if not line or (paragraphs and paragraphs[0].startswith(("Measured ", PROVENANCE))):
        return section
    return f"{heading}\n\n{line}\n{body}"


def merge(old_text: str, new_text: str, numbers: set[int], provenance: str) -> str:
    """The bench block after a run of ``numbers``: their sections and goal rows from
    ``new_text`` (each marked with ``provenance``), every other scenario's from
    ``old_text``."""
    old, new = parse(old_text), parse(new_text)
    kept = {n: s for n, s in old.sections.items() if n not in numbers}
    if not kept:
        return new_text
    # The earlier run's paragraph starts with "Measured ...": it is the provenance line.
    earlier = f"_{old.run_paragraph}_" if old.run_paragraph else ""
    sections = {n: with_provenance(s, earlier) for n, s in kept.items()}
    sections |= {n: with_provenance(s, provenance) for n, s in new.sections.items()}
    rows = [r for r in old.rows if row_number(r) not in numbers] + new.rows
    rows.sort(key=lambda r: row_number(r) or 0)
    head = [
        ln if not ln.startswith("Measured ") else _partial_head(ln, sorted(numbers))
        for ln in new.head
    ]
    parts = [
        *head,
        GOALS,
        "",
        *(new.table_head or old.table_head),
        *rows,
        *(new.note or old.note),
        "",
    ]
    parts += [sections[n] + "\n" for n in sorted(sections)]
    return "\n".join(parts).rstrip("\n") + "\n"


def _partial_head(paragraph: str, numbers: list[int]) -> str:
    named = ", ".join(map(str, numbers))
    return (
        f"The scenarios come from more than one run; each section says which. The latest "
        f"run (scenario{'s' if len(numbers) > 1 else ''} {named}): {paragraph}"
    )


def current_block(path: Path) -> str | None:
    """The bench block of ``path`` (between its markers), or None."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    a, b = text.find(BEGIN), text.find(END)
    if a < 0 or b < a:
        return None
    return text[a + len(BEGIN) : b].strip("\n")
