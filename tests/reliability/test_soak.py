"""The 60-second soak (``python -m es_integration.soak --duration 60``) as a test: a mixed
load with model faults toggled every few seconds against a real sidecar process, in front of
the session's ES. Goals: no unexplained error, RSS growth within 50 MB, caches and queues
within their bounds, a clean exit. The 10-minute run is the same tool with --duration 600.
"""

from __future__ import annotations

import os

import pytest

from es_integration.soak import SoakConfig, format_report, soak
from tests.conftest import ESTarget

DURATION_S = float(os.environ.get("SOAK_DURATION_S", "60"))


@pytest.mark.slow
async def test_soak(es: ESTarget, tmp_path_factory: pytest.TempPathFactory) -> None:
    cfg = SoakConfig(
        duration_s=DURATION_S,
        concurrency=32,
        rate=120.0,
        fault_every_s=4.0,
        es_url=es.url,
        # Small bounds, so that a minute is enough to reach them and see them hold.
        score_cache_entries=5000,
        response_cache_entries=100,
        log_dir=tmp_path_factory.mktemp("soak"),
    )
    report = await soak(cfg)
    text = format_report(report)
    print(text)
    d = report.as_dict()
    assert not d["unexplained_errors"], text
    assert d["requests"] > DURATION_S * 20, text
    assert report.rss_growth_mb <= cfg.max_rss_growth_mb, text
    assert all(report.within_bounds().values()), text
    assert d["peaks_vs_bounds"]["score_cache_entries"]["peak"] > 0, text
    assert d["sidecar_exit_code"] == 0, text
    assert "open" in d["breaker_states_sampled"], text
    assert "Traceback" not in report.log_path.read_text(), text
