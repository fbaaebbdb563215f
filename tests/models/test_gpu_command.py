"""``python -m devtools.bench.gpu`` where there is no GPU: it says so, exits 0, measures
nothing, and never replaces figures measured earlier."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="a GPU is present: the command would measure for minutes"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devtools.bench.gpu", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path: Path) -> None:
    done = _run()
    assert done.returncode == 0, done.stderr
    assert "no GPU is present" in done.stdout and "nothing was measured" in done.stdout

    docs = tmp_path / "benchmarks.md"
    done = _run("--write-docs", str(docs))
    assert done.returncode == 0, done.stderr
    text = docs.read_text()
    assert "<!-- BEGIN gpu -->" in text and "Not measured yet" in text
    assert "python3 -m devtools.bench.gpu --write-docs" in text  # how to run it on a GPU

    measured = text.replace("Not measured yet", "Measured on an H200: 4321 pairs/s")
    docs.write_text(measured)
    assert _run("--write-docs", str(docs)).returncode == 0
    assert docs.read_text() == measured  # figures measured earlier stay
