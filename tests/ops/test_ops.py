"""Operations surface: readiness, Prometheus metrics, request logs, Server-Timing, admin API,
graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from devtools.fakes import FaultModel
from es_integration.sidecar_proc import SidecarProcess
from tests.conftest import ESTarget
from tests.support.apps import running_sidecar
from tests.support.search import SAMPLE, base_config, multi_match

TOKEN = "s3cret-admin-token"
QUERY = "library card renew borrow books online account"


async def test_ready_names_model_kind_device_and_breaker(es: ESTarget, sample_index: str) -> None:
    async with running_sidecar(base_config(es.url)) as sc, aiohttp.ClientSession() as s:
        async with s.get(f"{sc.url}/_sidecar/ready") as r:
            assert r.status == 200
            body = await r.json()
        assert body["ready"] is True
        assert body["model"]["kind"] == "bi-encoder"
        assert body["model"]["device"] == "cpu"
        assert body["breaker"] == "closed"
        async with s.get(f"{sc.url}/_sidecar/health") as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})


async def test_metrics_logs_and_server_timing(
    es: ESTarget, sample_index: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = base_config(es.url, logging={"query": "hash"})
    caplog.set_level(logging.INFO, logger="sidecar.access")
    async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.post(
                f"{sc.url}/{SAMPLE}/_search",
                json=multi_match(QUERY),
                headers={"Authorization": "Basic c2VjcmV0OnNlY3JldA=="},
            ) as r:
                assert r.status == 200
                timing = r.headers["Server-Timing"]
                assert r.headers["X-Request-Id"]
        assert "es;dur=" in timing and "total;dur=" in timing
        async with s.get(f"{sc.url}/{SAMPLE}/_count") as r:
            assert "es;dur=" in r.headers["Server-Timing"]
        async with s.get(f"{sc.url}/_sidecar/metrics") as r:
            text = await r.text()
    assert (
        'rerank_sidecar_requests_total{outcome="applied",route="/{index}/_search",status="200"} 1.0'
        in text
    )
    assert 'outcome="cached"' in text
    assert 'rerank_sidecar_score_cache_lookups{result="hit"}' in text
    assert 'rerank_sidecar_stage_seconds_count{stage="model"}' in text
    assert "rerank_sidecar_batch_pairs_count" in text
    assert 'rerank_sidecar_breaker_state{state="closed"} 1.0' in text
    assert "rerank_sidecar_queue_pairs 0.0" in text
    # The autoscaling signal (docker/k8s-scaling): nothing waits for the model now.
    assert "rerank_sidecar_queue_wait_seconds 0.0" in text
    # One structured line per request; no credentials, no query text in clear.
    lines = [r for r in caplog.records if r.name == "sidecar.access"]
    search_lines = [r for r in lines if getattr(r, "route", "") == "/{index}/_search"]
    assert len(search_lines) == 2
    rec = search_lines[0]
    assert rec.outcome == "applied" and rec.status == 200 and rec.index == SAMPLE  # type: ignore[attr-defined]
    assert rec.query and QUERY not in rec.query  # type: ignore[attr-defined]
    assert rec.total_ms >= rec.es_ms > 0  # type: ignore[attr-defined]
    everything = " ".join(json.dumps(vars(r), default=str) for r in caplog.records) + text
    assert "c2VjcmV0OnNlY3JldA" not in everything


async def _admin(
    url: str, method: str, path: str, token: str | None = TOKEN
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.request(method, url + path, headers=headers) as r:
        return r.status, await r.json()


async def test_admin_api_auth_and_actions(
    es: ESTarget, sample_index: str, tmp_path: Path, fake_reranker: FaultModel
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("default: 'off'\n")
    config = base_config(
        es.url,
        admin={"token": TOKEN},
        model={"name": fake_reranker.url, "remote": {"api_key": "remote-secret"}},
        rollout={"rules_file": str(rules)},
    )
    async with running_sidecar(config) as sc:
        status, body = await _admin(sc.url, "GET", "/_sidecar/admin/rollout", token=None)
        assert status == 401 and body["status"] == 401
        status, body = await _admin(sc.url, "GET", "/_sidecar/admin/rollout", token="wrong")
        assert status == 403 and body["error"]["reason"] == "wrong admin token"

        status, body = await _admin(sc.url, "GET", "/_sidecar/admin/rollout")
        assert (status, body["default"]) == (200, "off")
        rules.write_text("default: shadow\nrules:\n  - {clients: [10.0.0.0/8], mode: 'on'}\n")
        status, body = await _admin(sc.url, "POST", "/_sidecar/admin/rollout/reload")
        assert status == 200 and body["default"] == "shadow" and len(body["rules"]) == 1
        rules.write_text("default: sometimes\n")
        status, body = await _admin(sc.url, "POST", "/_sidecar/admin/rollout/reload")
        assert status == 400 and "previous rules stay" in body["error"]["reason"]
        assert (await _admin(sc.url, "GET", "/_sidecar/admin/rollout"))[1]["default"] == "shadow"

        status, body = await _admin(sc.url, "POST", "/_sidecar/admin/breaker/open")
        assert body["state"] == "open"
        rules.write_text("default: 'on'\n")
        await _admin(sc.url, "POST", "/_sidecar/admin/rollout/reload")
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{sc.url}/{SAMPLE}/_search", json=multi_match(QUERY)) as r,
        ):
            assert r.headers["X-Rerank"] == "fallback; reason=breaker_open"
        status, body = await _admin(sc.url, "POST", "/_sidecar/admin/breaker/reset")
        assert body["state"] == "closed"

        status, body = await _admin(sc.url, "GET", "/_sidecar/admin/cache")
        assert status == 200 and body["scores"]["max_entries"] > 0
        status, body = await _admin(sc.url, "POST", "/_sidecar/admin/cache/clear")
        assert body["scores"]["entries"] == 0

        status, body = await _admin(sc.url, "GET", "/_sidecar/admin/config")
        assert status == 200
        assert body["admin"]["token"] == "***"
        assert body["model"]["remote"]["api_key"] == "***"
        assert TOKEN not in json.dumps(body)


async def test_admin_unreachable_from_other_networks(es: ESTarget, sample_index: str) -> None:
    config = base_config(es.url, admin={"token": TOKEN, "allow_from": ["10.0.0.0/8"]})
    async with running_sidecar(config) as sc:
        status, body = await _admin(sc.url, "GET", "/_sidecar/admin/config")
        assert status == 404
        assert TOKEN not in json.dumps(body)


def test_sigterm_drains_in_flight_requests(es: ESTarget, sample_index: str, tmp_path: Path) -> None:
    """SIGTERM: stop accepting, finish what is in flight, stop the model worker, exit 0."""

    async def model_server() -> FaultModel:
        return await FaultModel().start()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    fake = on_loop(model_server())
    try:
        config = {"rerank": {"budget_ms": 15000}, "server": {"shutdown_timeout_s": 10}}
        sc = SidecarProcess.start(
            es.url, log_path=tmp_path / "sc.log", model=fake.url, config=config, wait_ready=True
        )
        # The model holds every call from now on until the test lets it answer.
        loop.call_soon_threadsafe(setattr, fake, "mode", "held")
        calls = fake.calls
        result: dict[str, Any] = {}

        def search() -> None:
            r = requests.post(f"{sc.url}/{SAMPLE}/_search", json=multi_match(QUERY), timeout=60)
            result["status"], result["header"] = r.status_code, r.headers.get("X-Rerank")

        client = threading.Thread(target=search)
        client.start()
        on_loop(fake.calls_reached(calls + 1))  # the search is now with the model
        os.kill(sc.proc.pid, signal.SIGTERM)
        # No new connection is accepted while the search is still in flight: a bounded
        # poll (only the process can tell when it closed its port).
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{sc.url}/_sidecar/health", timeout=2)
            except requests.ConnectionError:
                break
            assert time.monotonic() < deadline, "still accepting connections 30 s after SIGTERM"
            time.sleep(0.02)
        assert client.is_alive() and not result, "the search was still in flight"
        loop.call_soon_threadsafe(fake.release)
        client.join(60)
        assert result == {"status": 200, "header": "applied"}
        assert sc.proc.wait(20) == 0
        assert "stopped" in sc.log_path.read_text()
    finally:
        loop.call_soon_threadsafe(fake.release)
        on_loop(fake.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
