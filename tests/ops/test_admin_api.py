"""The admin sub-application in the real app, without Elasticsearch (the admin API never
calls it): one middleware guards every admin path, errors keep the ES shape, and the
parent's middlewares (metrics, access log) still see admin requests."""

from __future__ import annotations

import ipaddress
from typing import Any

import aiohttp
import pytest

from devtools.fakes import FaultModel
from sidecar.handlers.admin import TOKEN_ENV
from sidecar.keys import ADMISSION
from sidecar.netmatch import in_networks, parse_address, parse_networks
from tests.support.apps import running_sidecar
from tests.support.search import base_config

TOKEN = "s3cret-admin-token"
#: Nothing listens here; the admin API must not need ES.
NO_ES = "http://127.0.0.1:9"


def _config(fake: FaultModel, **admin: Any) -> dict[str, Any]:
    return base_config(NO_ES, admin=admin, model={"name": fake.url})


async def _call(
    url: str, method: str, path: str, token: str | None = TOKEN, header: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": header or f"Bearer {token}"} if (token or header) else {}
    async with aiohttp.ClientSession() as s, s.request(method, url + path, headers=headers) as r:
        assert r.content_type == "application/json"
        return r.status, await r.json()


def _es_error(body: dict[str, Any], status: int) -> str:
    """The ES error shape; returns the reason."""
    assert body["status"] == status
    assert set(body["error"]) >= {"type", "reason"}
    reason: str = body["error"]["reason"]
    return reason


async def test_every_admin_path_needs_a_token(fake_reranker: FaultModel) -> None:
    paths = [
        ("GET", "/rollout"),
        ("POST", "/rollout/reload"),
        ("GET", "/breaker"),
        ("POST", "/breaker/open"),
        ("POST", "/breaker/reset"),
        ("GET", "/cache"),
        ("POST", "/cache/clear"),
        ("GET", "/config"),
    ]
    async with running_sidecar(_config(fake_reranker, token=TOKEN)) as sc:
        for method, path in paths:
            status, body = await _call(sc.url, method, "/_sidecar/admin" + path, token=None)
            assert status == 401, (method, path)
            assert "Bearer" in _es_error(body, 401)
            status, body = await _call(sc.url, method, "/_sidecar/admin" + path, header="Bearer ")
            assert status == 401, (method, path)
            status, body = await _call(sc.url, method, "/_sidecar/admin" + path, token="wrong")
            assert (status, _es_error(body, 403)) == (403, "wrong admin token"), (method, path)
        # Nothing was done by the refused calls.
        assert sc.app[ADMISSION].breaker.state == "closed"
        status, body = await _call(sc.url, "GET", "/_sidecar/admin/breaker")
        assert (status, body["state"], body["fail_counter"]) == (200, "closed", 0)


async def test_resources_come_from_the_parent_app(fake_reranker: FaultModel) -> None:
    async with running_sidecar(_config(fake_reranker, token=TOKEN)) as sc:
        status, body = await _call(sc.url, "POST", "/_sidecar/admin/breaker/open")
        assert (status, body["state"]) == (200, "open")
        assert sc.app[ADMISSION].breaker.state == "open"
        status, body = await _call(sc.url, "POST", "/_sidecar/admin/breaker/reset")
        assert (status, body["state"]) == (200, "closed")
        status, body = await _call(sc.url, "GET", "/_sidecar/admin/rollout")
        assert (status, body["source"], body["default"]) == (200, "config", "on")
        status, body = await _call(sc.url, "GET", "/_sidecar/admin/config")
        assert status == 200 and body["admin"]["token"] == "***"
        assert body["es"]["url"] == NO_ES


async def test_unknown_admin_paths_are_guarded_and_es_shaped(fake_reranker: FaultModel) -> None:
    async with running_sidecar(_config(fake_reranker, token=TOKEN)) as sc:
        # Without the token an unknown admin path does not even say that it is unknown.
        status, body = await _call(sc.url, "GET", "/_sidecar/admin/nope", token=None)
        assert status == 401
        status, body = await _call(sc.url, "GET", "/_sidecar/admin/nope")
        reason = _es_error(body, 404)
        assert status == 404 and reason == "no handler found for uri [/_sidecar/admin/nope]"
        status, body = await _call(sc.url, "GET", "/_sidecar/admin/breaker/open")
        assert status == 405
        _es_error(body, 405)


async def test_outside_allow_from_every_admin_path_is_a_plain_404(
    fake_reranker: FaultModel,
) -> None:
    config = _config(fake_reranker, token=TOKEN, allow_from=["10.0.0.0/8", "::1/128"])
    async with running_sidecar(config) as sc:
        for method, path in [("GET", "/config"), ("POST", "/breaker/open"), ("GET", "/nope")]:
            for token in (TOKEN, None, "wrong"):
                status, body = await _call(sc.url, method, "/_sidecar/admin" + path, token=token)
                reason = _es_error(body, 404)
                assert (
                    status == 404 and reason == f"no handler found for uri [/_sidecar/admin{path}]"
                )
                assert TOKEN not in str(body)
        assert sc.app[ADMISSION].breaker.state == "closed"


async def test_parent_middlewares_see_admin_requests(fake_reranker: FaultModel) -> None:
    async with running_sidecar(_config(fake_reranker, token=TOKEN)) as sc:
        await _call(sc.url, "GET", "/_sidecar/admin/config")
        await _call(sc.url, "GET", "/_sidecar/admin/config", token="wrong")
        async with aiohttp.ClientSession() as s, s.get(f"{sc.url}/_sidecar/metrics") as r:
            text = await r.text()
    route = 'route="/_sidecar/admin/config"'
    assert f'rerank_sidecar_requests_total{{outcome="none",{route},status="200"}} 1.0' in text
    assert f'rerank_sidecar_requests_total{{outcome="none",{route},status="403"}} 1.0' in text


async def test_token_from_the_environment(
    fake_reranker: FaultModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    async with running_sidecar(_config(fake_reranker)) as sc:
        assert (await _call(sc.url, "GET", "/_sidecar/admin/breaker", token="from-env"))[0] == 200
        assert (await _call(sc.url, "GET", "/_sidecar/admin/breaker"))[0] == 403


async def test_without_any_token_every_call_is_refused(
    fake_reranker: FaultModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    async with running_sidecar(_config(fake_reranker)) as sc:
        status, body = await _call(sc.url, "GET", "/_sidecar/admin/breaker", token="anything")
        assert (status, _es_error(body, 403)) == (403, "wrong admin token")


# --- the shared matcher (sidecar.netmatch), as admin and rollout use it ---------------------


def test_parse_address_forms() -> None:
    v4 = ipaddress.ip_address("10.1.2.3")
    assert parse_address("10.1.2.3") == v4
    assert parse_address(" 10.1.2.3 ") == v4
    assert parse_address("::ffff:10.1.2.3") == v4  # v4-mapped v6 is the v4 address
    assert parse_address("[::1]") == ipaddress.ip_address("::1")
    assert parse_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    for bad in (None, "", "unknown", "10.1.2", "[::1"):
        assert parse_address(bad) is None


def test_networks_match_v4_v6_and_mapped() -> None:
    nets = parse_networks(["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"])
    assert in_networks(parse_address("10.255.0.1"), nets)
    assert in_networks(parse_address("::ffff:10.0.0.1"), nets)
    assert in_networks(parse_address("2001:db8::42"), nets)
    assert in_networks(parse_address("192.168.1.7"), nets)
    assert not in_networks(parse_address("192.168.1.8"), nets)
    assert not in_networks(parse_address("11.0.0.1"), nets)
    assert not in_networks(parse_address("2001:db9::1"), nets)
    assert not in_networks(None, nets)
    assert not in_networks(parse_address("10.0.0.1"), parse_networks([]))
    # Host bits in a network are tolerated, as in the config validator.
    assert in_networks(parse_address("10.9.9.9"), parse_networks(["10.1.2.3/8"]))
