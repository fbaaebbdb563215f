"""What a ``rerank-sidecar serve`` process prints, and how it stops, as a container sees it.

* With ``logging.format: json`` (the default) every line of its output parses as JSON: the
  model libraries' warnings and progress bars ("Loading weights") used to come out as plain
  text beside the JSON, or twice.
* A hub that cannot be reached is said to be that in ``/_sidecar/ready``, not taken for a
  model without a ``config.json``.
* SIGTERM while a model load is still running stops the process within the stop grace
  period: the load's thread used to keep it alive until the load gave up.

tests/docker/test_image.py checks the same in the container image.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import constants, file_download

from es_integration.local_es import free_port
from es_integration.sidecar_proc import SidecarProcess, write_config
from sidecar.config import ModelConfig, build_config
from sidecar.errors import ModelLoadError
from sidecar.scoring.detect import resolve_model
from tests.support.search import BUNDLED_MODEL

#: A hub address that can never resolve (RFC 2606): a real DNS failure, with no traffic.
UNREACHABLE_HUB = "http://hub.invalid"
HUB_MODEL = "Qwen/Qwen3-Reranker-0.6B"


def _json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line of the log is not JSON: {line!r}")
    return records


def test_the_log_of_a_sidecar_with_its_model_loaded_is_json_lines_only(
    sidecar: SidecarProcess,
) -> None:
    # The session's sidecar process: the bundled model loaded and warm (wait_ready), its
    # stdout and stderr together in one file, as a container runtime keeps them.
    text = sidecar.log_path.read_text(encoding="utf-8")
    records = _json_lines(text)
    assert any(r["logger"] == "sidecar.models" and "ready" in r["msg"] for r in records)
    assert "Loading weights" not in text
    # lingua's models (seconds with the GIL held) load before the port opens, so no
    # request waits behind them.
    said = [r["msg"] for r in records]
    loaded = next(i for i, msg in enumerate(said) if msg.startswith("language detection for en"))
    listening = next(i for i, msg in enumerate(said) if msg.startswith("listening on"))
    assert loaded < listening


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE_HUB)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    # huggingface_hub retries a failed look-up 5 times over 23 s; the first failure is the
    # same failure.
    monkeypatch.setattr(file_download, "_DEFAULT_RETRY_ON_EXCEPTIONS", ())
    yield


@pytest.mark.usefixtures("unreachable_hub")
def test_an_unreachable_hub_is_named_as_such() -> None:
    with pytest.raises(ModelLoadError) as err:
        resolve_model(ModelConfig(name=HUB_MODEL))
    message = str(err.value)
    assert f"the Hugging Face hub ({UNREACHABLE_HUB}) could not be reached" in message
    assert "ConnectError" in message and "config.json" in message
    assert "no config.json or modules.json" not in message


@pytest.mark.usefixtures("unreachable_hub")
def test_offline_a_model_missing_from_the_cache_is_still_said_to_be_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match=r"no config.json or modules.json in the local"):
        resolve_model(ModelConfig(name=HUB_MODEL))


@dataclass(frozen=True)
class Stopped:
    code: int
    #: From SIGTERM to the exit.
    seconds: float
    #: stdout and stderr in one stream, as a container runtime keeps them.
    output: str


def _sigterm_when(
    tmp_path: Path,
    model: str,
    env: dict[str, str],
    signal_at: Callable[[dict[str, Any]], bool],
) -> Stopped:
    """Run ``serve`` with ``model``, send SIGTERM at the first log record ``signal_at``
    matches, and wait for the exit (at most the stop grace period)."""
    config_path = tmp_path / "sidecar.yaml"
    config = write_config(config_path, "http://127.0.0.1:9", free_port(), model=model)
    grace_s = build_config(config).server.shutdown_timeout_s
    seen: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(config_path)],
        stderr=subprocess.STDOUT,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                seen.append(line)
                if signal_at(json.loads(line)):
                    break
            else:
                pytest.fail("the process ended before the signal's moment:\n" + "".join(seen))
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            code = proc.wait(timeout=grace_s)
            stopped_s = time.monotonic() - sent
            seen += proc.stdout.readlines()
        finally:
            if proc.poll() is None:
                proc.kill()
    return Stopped(code, stopped_s, "".join(seen))


def test_sigterm_during_a_model_load_stops_within_the_grace_period(tmp_path: Path) -> None:
    """The default model from a hub that cannot be reached: huggingface_hub retries each
    file for 23 s inside the load's thread. SIGTERM arrives while it does (its retry
    warnings are the signal); the process must stop within server.shutdown_timeout_s."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": UNREACHABLE_HUB,
        "HF_HOME": str(tmp_path / "hf"),
    }
    env.pop("CI", None)  # transformers lets its records propagate only under CI=true
    stopped = _sigterm_when(
        tmp_path,
        HUB_MODEL,
        env,
        # The load is under way: huggingface_hub retries the hub, and says so as JSON.
        lambda r: r["logger"].startswith("huggingface_hub") and "Retry" in r["msg"],
    )
    assert stopped.code == 0, stopped.output
    # Well inside any grace period (issue 23: within 5 s): the load is abandoned.
    assert stopped.seconds < 5.0, f"stopped {stopped.seconds:.1f}s after SIGTERM"
    records = _json_lines(stopped.output)
    assert [r["msg"] for r in records if r["logger"] == "sidecar"][-1].startswith(
        "exiting without waiting for create_scorer"
    )


def test_sigterm_before_the_port_opens_stops_cleanly(tmp_path: Path) -> None:
    """Start-up takes seconds before the port opens (the bundled model's language models
    load first, "loading language detection" is the signal): SIGTERM then is honoured
    when start-up ends, with exit 0 and the log's "stopped", within the grace period."""
    stopped = _sigterm_when(
        tmp_path,
        BUNDLED_MODEL,
        {**os.environ, "HF_HUB_OFFLINE": "1"},
        lambda r: r["msg"].startswith("loading language detection for en"),
    )
    assert stopped.code == 0, stopped.output
    said = [r["msg"] for r in _json_lines(stopped.output)]
    assert said[-1] == "stopped", said
