"""``make demo``'s program, as a new user runs it: the local ES, the sample corpus, the
sidecar, simulated users in three cohorts, and the UBI report printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_the_demo_prints_the_report(tmp_path: Path) -> None:
    if os.environ.get("ES_URL"):
        pytest.skip("the demo starts its own local ES; ES_URL points elsewhere")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "es_integration",
            "demo",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            "0",
            "--es-port",
            "0",
            "--users",
            "8",
            "--exit-after-ready",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for mode in ("on", "off", "interleave"):
        assert f"  {mode:<10} 8 searches" in out
    table = out[out.index("the UBI report") :]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:6] if line.strip()}
    assert set(rows) >= {"cohort", "on", "off", "interleave"}
    assert all(rows[mode][1] == "8" for mode in ("on", "off", "interleave"))
    assert "verdict: " in table
    assert "0 on queries not logged in the period" in table
    assert "Traceback" not in done.stderr
