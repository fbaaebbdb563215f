"""The replicas benchmark (devtools.bench scenario 13) runs its contenders and reports both
figures, here on a tiny log (figures are the benchmark's business, not the tests')."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from devtools.bench.scenarios import replicas
from devtools.bench.servers import Bench


class Tiny(Bench):
    def scale(self, full: int, quick: int) -> int:
        return max(1, quick // 10)


@pytest.mark.slow
def test_the_replicas_scenario_measures_hit_rates_and_the_redis_hit(
    redis_server_binary: str, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        sec = replicas.run(Tiny(quick=True, work=tmp_path, stack=stack))
    text = sec.markdown()
    assert "| 3, each its own memory |" in text and "| 3, sharing Redis (`shared.url`) |" in text
    assert "| Redis (one MGET of 20 keys) |" in text
    rate, redis_hit = sec.goals
    # On a log with repeats, sharing never loses to keeping apart.
    assert rate.met is True, rate.measured
    assert redis_hit.met is None and redis_hit.measured.endswith(" ms)")
