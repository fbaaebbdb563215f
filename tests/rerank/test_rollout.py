"""Rollout: CIDR, index and percentage rules, shadow mode, trusted X-Forwarded-For, and
reloads that drop no request."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from multidict import CIMultiDict

from es_integration.sidecar_proc import SidecarProcess
from sidecar.config import RolloutConfig, RolloutRule
from sidecar.errors import ConfigError
from sidecar.keys import ROLLOUT, SHADOW
from sidecar.rerank.rollout import Decision, Rollout, bucket
from tests.conftest import ESTarget
from tests.support.apps import running_sidecar
from tests.support.search import BUNDLED_MODEL, SAMPLE, base_config, multi_match

QUERY = "library card renew borrow books online account"


async def _header(url: str, index: str = SAMPLE, **headers: str) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/{index}/_search", json=multi_match(QUERY), headers=headers) as r,
    ):
        assert r.status == 200
        await r.read()
        return r.headers["X-Rerank"]


def decide(
    rollout: Rollout, peer: str, forwarded_for: str | None, override: str | None, indices: list[str]
) -> Decision:
    headers: CIMultiDict[str] = CIMultiDict()
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    if override is not None:
        headers[rollout.config.override_header] = override
    return rollout.decide(rollout.client(peer, headers), indices)


def test_rules_first_match_wins_cidr_index_percent() -> None:
    rollout = Rollout(
        RolloutConfig(
            default="off",
            rules=(
                RolloutRule(name="blocked", clients=("10.9.0.0/16",), mode="off"),
                RolloutRule(name="staff", clients=("10.0.0.0/8", "2001:db8::/32"), mode="on"),
                RolloutRule(name="catalogue", indices=("catalogue-*",), mode="shadow"),
                RolloutRule(name="canary", percent=25, mode="on"),
            ),
        )
    )

    def mode(ip: str, *indices: str) -> tuple[str, str]:
        d = decide(rollout, ip, None, None, list(indices))
        return d.mode, d.rule

    assert mode("10.9.1.1", "x") == ("off", "blocked")
    assert mode("10.1.2.3", "x") == ("on", "staff")
    assert mode("2001:db8:1::7", "x") == ("on", "staff")
    assert mode("::ffff:10.1.2.3", "x") == ("on", "staff")  # IPv4-mapped IPv6
    assert mode("192.0.2.1", "catalogue-2024") == ("shadow", "catalogue")
    # A search over several indices matches an index rule only if all of them match.
    assert mode("192.0.2.1", "catalogue-2024", "helpdesk")[1] != "catalogue"

    # The percentage is a stable hash of the client: the same client always gets the same
    # answer, and about a quarter of clients are in.
    ips = [str(ipaddress.IPv4Address(0xC6336400 + i)) for i in range(4000)]
    first = [mode(ip, "x")[0] for ip in ips]
    assert first == [mode(ip, "x")[0] for ip in ips]
    share = first.count("on") / len(first)
    assert 0.22 < share < 0.28
    assert all(
        (mode(ip, "x")[0] == "on") == (bucket(ipaddress.ip_address(ip)) < 25) for ip in ips[:200]
    )


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    config = RolloutConfig(
        default="off",
        rules=(RolloutRule(clients=("10.0.0.0/8",), mode="on"),),
        trusted_proxies=("127.0.0.1/32", "172.16.0.0/12"),
        trusted_clients=("127.0.0.1/32",),
    )
    rollout = Rollout(config)
    # Trusted proxy: the right-most untrusted hop is the client.
    assert decide(rollout, "127.0.0.1", "10.1.1.1", None, ["i"]).mode == "on"
    assert decide(rollout, "127.0.0.1", "10.1.1.1, 172.16.0.9", None, ["i"]).mode == "on"
    # A client cannot spoof by prepending: only the hop the proxy saw counts.
    assert decide(rollout, "127.0.0.1", "10.1.1.1, 198.51.100.7", None, ["i"]).mode == "off"
    # Untrusted peer: its X-Forwarded-For is ignored.
    assert decide(rollout, "198.51.100.7", "10.1.1.1", None, ["i"]).mode == "off"
    # The override header works from trusted clients only.
    assert decide(rollout, "127.0.0.1", None, "shadow", ["i"]).mode == "shadow"
    assert decide(rollout, "198.51.100.7", None, "on", ["i"]).mode == "off"


async def test_rules_through_the_sidecar(es: ESTarget, sample_index: str) -> None:
    config = base_config(
        es.url,
        rollout={
            "default": "off",
            "trusted_proxies": ["127.0.0.1/32"],
            "rules": [
                {"name": "staff", "clients": ["10.0.0.0/8"], "mode": "on"},
                {"name": "v6-shadow", "clients": ["2001:db8::/32"], "mode": "shadow"},
            ],
        },
    )
    async with running_sidecar(config) as sc:
        assert await _header(sc.url) == "skipped; reason=rollout_off"
        assert await _header(sc.url, **{"X-Forwarded-For": "10.4.5.6"}) in ("applied", "cached")
        shadow = sc.app[SHADOW]
        before = shadow.compared
        assert await _header(sc.url, **{"X-Forwarded-For": "2001:db8::42"}) == "shadow"
        for _ in range(100):
            if shadow.compared > before:
                break
            await asyncio.sleep(0.05)
        assert shadow.compared == before + 1, "the shadow rerank ran in the background"

    untrusted = base_config(
        es.url, rollout={"default": "off", "rules": [{"clients": ["10.0.0.0/8"], "mode": "on"}]}
    )
    async with running_sidecar(untrusted) as sc:
        assert (
            await _header(sc.url, **{"X-Forwarded-For": "10.4.5.6"})
            == "skipped; reason=rollout_off"
        )


async def test_shadow_returns_es_order(es: ESTarget, sample_index: str) -> None:
    from elasticsearch import Elasticsearch

    direct = Elasticsearch(es.url).search(index=SAMPLE, body=multi_match(QUERY, size=10)).body
    config = base_config(es.url, rollout={"default": "shadow"})
    async with (
        running_sidecar(config) as sc,
        aiohttp.ClientSession() as s,
        s.post(f"{sc.url}/{SAMPLE}/_search", json=multi_match(QUERY, size=10)) as r,
    ):
        body: dict[str, Any] = await r.json()
        assert r.headers["X-Rerank"] == "shadow"
    assert [h["_id"] for h in body["hits"]["hits"]] == [h["_id"] for h in direct["hits"]["hits"]]
    assert [h["_score"] for h in body["hits"]["hits"]] == [
        h["_score"] for h in direct["hits"]["hits"]
    ]


async def test_reload_under_load_drops_nothing(
    es: ESTarget, sample_index: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("default: 'off'\nrules: []\n")
    async with running_sidecar(base_config(es.url, rollout={"rules_file": str(rules)})) as sc:
        rollout = sc.app[ROLLOUT]
        assert await _header(sc.url) == "skipped; reason=rollout_off"

        async def load() -> list[int]:
            statuses = []
            async with aiohttp.ClientSession() as s:
                for i in range(40):
                    body = multi_match(f"{QUERY} {i % 5}", size=5)
                    async with s.post(f"{sc.url}/{SAMPLE}/_search", json=body) as r:
                        await r.read()
                        statuses.append(r.status)
            return statuses

        clients = [asyncio.create_task(load()) for _ in range(4)]
        for i in range(10):
            rules.write_text(f"default: {'on' if i % 2 == 0 else 'off'}\nrules: []\n")
            rollout.reload()
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*clients)
        assert [s for r in results for s in r] == [200] * 160

        # A bad file keeps the rules in force and says what is wrong.
        rules.write_text("default: on\nrules:\n  - clients: [not-an-ip]\n")
        before = rollout.rules
        with pytest.raises(ConfigError, match=r"rules\[0\]\.clients"):
            rollout.reload()
        assert rollout.rules is before
        assert rollout.last_error is not None


def test_sighup_reloads_rules_in_a_running_process(
    es: ESTarget, sample_index: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("default: 'off'\n")
    config = {
        "rollout": {"rules_file": str(rules)},
        # A busy CI machine must not turn the first rerank into a timeout fallback.
        "rerank": {"budget_ms": 25000},
    }
    with SidecarProcess.start(
        es.url, log_path=tmp_path / "sc.log", model=BUNDLED_MODEL, config=config, wait_ready=True
    ) as sc:
        url = f"{sc.url}/{SAMPLE}/_search"
        assert requests.post(url, json=multi_match(QUERY)).headers["X-Rerank"] == (
            "skipped; reason=rollout_off"
        )
        rules.write_text("default: 'on'\n")
        os.kill(sc.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        header = ""
        while time.monotonic() < deadline:
            header = requests.post(url, json=multi_match(QUERY)).headers["X-Rerank"]
            if header != "skipped; reason=rollout_off":
                break
            time.sleep(0.1)
        assert header in ("applied", "cached")
