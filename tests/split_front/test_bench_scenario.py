"""The benchmark scenario of the split front (devtools.bench scenario 6) runs its three
contenders and reports them, here at a few requests per round (figures are the benchmark's
business, not the tests')."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from devtools.bench.scenarios import split_front
from devtools.bench.servers import Bench


class Tiny(Bench):
    def scale(self, full: int, quick: int) -> int:
        return 2 if quick <= 4 else 8


@pytest.mark.slow
def test_the_split_front_scenario_measures_its_contenders(nginx: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        sec = split_front.run(Tiny(quick=True, work=tmp_path, stack=stack))
    text = sec.markdown()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if "|" in line}
    for label in ("direct ES", "nginx split front", "all-in-one sidecar"):
        # 2 rounds of 8 requests, none failed, none seen by the sidecar's rerank path.
        assert f"{label} (pass-through) | 16 | 16 | 0 |" in rows[f"{label} (pass-through)"]
        assert rows[f"{label} (pass-through)"].count("| — |") >= 1
    assert "| skipped 16 |" in rows["nginx -> sidecar (search)"]
    assert "| skipped 16 |" in rows["all-in-one sidecar (search)"]
    assert "Added to a pass-through request at c=16: nginx" in text
    assert [g.scenario for g in sec.goals] == [
        "6 split front, pass-through c=16",
        "6 split front, search c=16",
    ]
