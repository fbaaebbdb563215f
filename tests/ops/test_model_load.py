"""Fail open at start: a model that cannot be loaded does not take search down with it.

The sidecar serves ES order (``skipped; reason=model_not_ready``), says why in
``/_sidecar/ready`` and a metric, retries with backoff, and turns reranking on by itself
once the model loads. ``model.on_load_failure: exit`` stops instead (exit code 3); a model
configuration that cannot work is a configuration error (exit code 2).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import sidecar.app
from devtools.tiny_models import TINY, save_cross_encoder
from es_integration.local_es import free_port
from es_integration.sidecar_proc import write_config
from tests.conftest import ESTarget
from tests.support.apps import running_sidecar
from tests.support.search import SAMPLE, base_config, multi_match


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as r:
        return r.status, await r.json(content_type=None) if "json" in r.content_type else None


async def _metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(f"{url}/_sidecar/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


async def test_serves_es_order_until_the_model_can_be_loaded(
    es: ESTarget, sample_index: str, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()  # exists, but holds no model yet (a volume still being filled)
    config = base_config(
        es.url,
        model={"name": str(model_dir), "self_test": False},
        tuning={"model": {"load_retry_max_s": 0.2}},
    )
    async with running_sidecar(config, wait_model=False) as sc, aiohttp.ClientSession() as s:
        for _ in range(200):
            if await _metric(s, sc.url, "rerank_sidecar_model_load_failures_total") >= 1:
                break
            await asyncio.sleep(0.05)
        status, ready = await _get(s, f"{sc.url}/_sidecar/ready")
        # Ready, in ES order: a probe must not take the only copy of search away.
        assert status == 200
        assert (ready["ready"], ready["reranking"]) == (True, False)
        assert ready["model"]["load_failures"] >= 1
        assert "cannot tell its backend" in ready["model"]["refused"]
        assert await _metric(s, sc.url, "rerank_sidecar_model_ready") == 0
        async with s.post(f"{sc.url}/{SAMPLE}/_search", json=multi_match("renew card")) as r:
            assert r.status == 200
            assert r.headers["X-Rerank"] == "skipped; reason=model_not_ready"
            assert (await r.json())["hits"]["hits"], "ES's own hits, in ES order"

        save_cross_encoder(model_dir, TINY)  # the files arrive; the next retry loads them
        for _ in range(600):
            status, ready = await _get(s, f"{sc.url}/_sidecar/ready")
            if ready["reranking"]:
                break
            await asyncio.sleep(0.05)
        assert status == 200 and ready["reranking"] and ready["model"]["refused"] is None
        async with s.post(f"{sc.url}/{SAMPLE}/_search", json=multi_match("renew card")) as r:
            assert (r.status, r.headers["X-Rerank"]) == (200, "applied")


def test_on_load_failure_exit_stops_with_code_3(es: ESTarget, tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    path = tmp_path / "sidecar.yaml"
    config = {"model": {"name": str(empty), "on_load_failure": "exit"}}
    write_config(path, es.url, free_port(), config=config)
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3
    assert "cannot tell its backend" in proc.stdout + proc.stderr


def test_a_model_configuration_that_cannot_work_exits_with_code_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: some-org/some-model\n  backend: remote\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("config error: model.backend: 'remote'")


async def test_ready_during_the_first_load(
    es: ESTarget, sample_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readiness means searches can be answered: 200 during the first load (ES order is
    served then, which is correct), so a single replica is never out of its Service for
    the load. The model's state is its own field and metric."""
    model_dir = tmp_path / "model"
    save_cross_encoder(model_dir, TINY)
    release = threading.Event()
    real = sidecar.app.create_scorer

    def slow_create(*args: Any) -> Any:
        release.wait(60)  # the load is under way until the test lets it finish
        return real(*args)

    monkeypatch.setattr(sidecar.app, "create_scorer", slow_create)
    config = base_config(es.url, model={"name": str(model_dir), "self_test": False})
    loading = 'rerank_sidecar_model_state{state="loading"}'
    try:
        async with running_sidecar(config, wait_model=False) as sc, aiohttp.ClientSession() as s:
            status, ready = await _get(s, f"{sc.url}/_sidecar/ready")
            assert (status, ready["ready"], ready["reranking"]) == (200, True, False)
            assert (ready["model"]["state"], ready["model"]["load_failures"]) == ("loading", 0)
            assert await _metric(s, sc.url, loading) == 1.0
            async with s.post(f"{sc.url}/{SAMPLE}/_search", json=multi_match("library card")) as r:
                assert (r.status, r.headers["X-Rerank"]) == (
                    200,
                    "skipped; reason=model_not_ready",
                )
            release.set()
            for _ in range(600):
                status, ready = await _get(s, f"{sc.url}/_sidecar/ready")
                if ready["reranking"]:
                    break
                await asyncio.sleep(0.05)
            assert (status, ready["ready"], ready["reranking"]) == (200, True, True)
            assert ready["model"]["state"] == "warm"
            assert await _metric(s, sc.url, loading) == 0.0
            assert await _metric(s, sc.url, 'rerank_sidecar_model_state{state="warm"}') == 1.0
    finally:
        release.set()
