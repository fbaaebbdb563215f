"""Figures tests report for the end of the pytest output: the wire differential suite's
cases and the security probes.

A test records its figures on its own report (``user_properties``), and the summary adds
up the teardown reports it is given. Reports are what pytest-xdist's workers send to the process
that prints the summary, so the totals are the same run serially or on several workers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

WIRE = "wire_cases"
PROBES = "security_probes"


@dataclass(frozen=True)
class WireCase:
    server: str
    group: str
    name: str
    outcome: str
    diffs: tuple[str, ...]


@dataclass
class Tally:
    wire: dict[str, list[WireCase]] = field(default_factory=lambda: defaultdict(list))
    probes_run: int = 0
    unsafe: list[str] = field(default_factory=list)

    def add(self, report: pytest.TestReport) -> None:
        # Each report of a test carries what the test recorded so far; the teardown report
        # carries all of it (a fixture's teardown included), once.
        if report.when != "teardown":
            return
        for key, value in report.user_properties:
            found = cast(Any, value)  # what the tests below recorded under the key
            if key == WIRE:
                for server, group, name, outcome, diffs in found:
                    self.wire[server].append(WireCase(server, group, name, outcome, tuple(diffs)))
            elif key == PROBES:
                self.probes_run += found["run"]
                self.unsafe += found["unsafe"]

    def write(self, tr: pytest.TerminalReporter) -> None:
        if self.wire:
            tr.section("wire differential suite")
            for server, cases in sorted(self.wire.items()):
                _wire_lines(tr, server, cases)
        if self.probes_run:
            tr.write_sep("=", f"security probes: {self.probes_run} run, {len(self.unsafe)} unsafe")
            for line in self.unsafe[:200]:
                tr.write_line(f"UNSAFE {line}")


def _wire_lines(tr: pytest.TerminalReporter, server: str, cases: list[WireCase]) -> None:
    diffs = [c for c in cases if c.diffs]
    groups = Counter(c.group for c in cases)
    outcomes = Counter(
        "reranked" if c.outcome.split(";")[0] in ("applied", "cached") else c.outcome for c in cases
    )
    tr.write_line(
        f"{server}: {len(cases)} cases, {len(diffs)} with differences other than reranked order"
    )
    tr.write_line("  by group: " + ", ".join(f"{g} {n}" for g, n in sorted(groups.items())))
    tr.write_line("  outcomes: " + ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items())))
    for c in diffs[:20]:
        tr.write_line(f"  DIFFERENCE {c.group}/{c.name}: {'; '.join(c.diffs)[:400]}")
