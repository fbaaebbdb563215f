"""The soak (``python -m devtools.soak``) as a test: a mixed load with model faults toggled on
the way against a real sidecar process, in front of the session's ES. Goals: no unexplained
error, RSS growth within 50 MB, caches and queues within their bounds, a clean exit.

By default a short variant, bounded by request count rather than wall time: twelve phases
(healthy, then each fault in turn) of ``PHASE_REQUESTS`` requests, with cache bounds small
enough that the load reaches them. ``RELIABILITY_SOAK_S=60`` runs the 60-second soak instead;
the 10-minute one is the tool with ``--duration 600``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devtools.soak import FAULT_CYCLE, SoakConfig, format_report, soak
from tests.conftest import ESTarget

LONG_S = float(os.environ.get("RELIABILITY_SOAK_S", "0"))
PHASE_REQUESTS = 50
PHASES = 2 * len(FAULT_CYCLE)


def _config(es_url: str, log_dir: Path) -> SoakConfig:
    if LONG_S:
        return SoakConfig(
            duration_s=LONG_S,
            concurrency=32,
            rate=120.0,
            fault_every_s=4.0,
            es_url=es_url,
            # Small bounds, so that a minute is enough to reach them and see them hold.
            score_cache_entries=5000,
            response_cache_entries=100,
            log_dir=log_dir,
        )
    return SoakConfig(
        duration_s=None,
        requests=PHASES * PHASE_REQUESTS,
        fault_every_requests=PHASE_REQUESTS,
        concurrency=32,
        rate=0.0,
        # An open breaker lasts reset_timeout_s (1 s): sampled often enough to be seen.
        sample_every_s=0.2,
        es_url=es_url,
        # Bounds a few hundred requests overrun, so that holding them is what is checked.
        score_cache_entries=200,
        response_cache_entries=20,
        log_dir=log_dir,
    )


@pytest.mark.slow
async def test_soak(es: ESTarget, tmp_path_factory: pytest.TempPathFactory) -> None:
    cfg = _config(es.url, tmp_path_factory.mktemp("soak"))
    report = await soak(cfg)
    text = format_report(report)
    print(text)
    d = report.as_dict()
    assert not d["unexplained_errors"], text
    if LONG_S:
        assert d["requests"] > LONG_S * 20, text
    else:
        assert d["requests"] == cfg.requests, text
        # Every fault had its phase, each after a healthy one.
        cycle = [mode for fault in FAULT_CYCLE for mode in ("ok", fault)]
        assert d["faults_toggled"][:PHASES] == cycle, text
        # The load overran the score cache's bound, so holding it was really checked.
        score_cache = d["peaks_vs_bounds"]["score_cache_entries"]
        assert score_cache["peak"] == score_cache["bound"], text
    assert report.rss_growth_mb <= cfg.max_rss_growth_mb, text
    assert all(report.within_bounds().values()), text
    assert d["peaks_vs_bounds"]["score_cache_entries"]["peak"] > 0, text
    assert d["sidecar_exit_code"] == 0, text
    assert "open" in d["breaker_states_sampled"], text
    assert "Traceback" not in report.log_path.read_text(), text
