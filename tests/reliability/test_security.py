"""Security: credentials never leak into logs, metrics or the sidecar's own error bodies, and
request header limits hold without taking the process down.

Already covered elsewhere, not repeated here: cache isolation between users
(tests/rerank/test_isolation.py), admin API 401/403 and loopback-only
(tests/ops/test_ops.py::test_admin_api_auth_and_actions, ::test_admin_unreachable_from_other_
networks), X-Forwarded-For spoofing (tests/rerank/test_rollout.py), absolute-URI/Host SSRF
(tests/proxy/test_passthrough.py::test_absolute_uri_and_host_cannot_redirect), 413 on
intercepted bodies (tests/proxy/test_passthrough.py::test_intercepted_body_limit_is_413),
no credentials in access logs of a normal search (tests/ops/test_ops.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from devtools.fakes import FaultES, FaultModel
from tests.support.apps import running_sidecar
from tests.support.reliability import (
    SECRET,
    SECRET_PARTS,
    capture_all_logs,
    es_error,
    raw_exchange,
    raw_response,
)
from tests.support.search import base_config, multi_match

QUERY = "library card renew borrow books online account"
JSON_TYPE = {"Content-Type": "application/json"}
API_KEY = "remote-api-key-s3cr3t-0123456789"


def _no_secret(text: str, *secrets: str) -> None:
    for secret in secrets or SECRET_PARTS:
        assert secret not in text, f"{secret!r} leaked: ...{text[text.find(secret) - 200 :][:400]}"


async def _metrics(s: aiohttp.ClientSession, url: str) -> str:
    async with s.get(f"{url}/_sidecar/metrics") as r:
        return await r.text()


async def test_authorization_never_in_logs_metrics_or_sidecar_errors(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    """Every kind of error the sidecar makes itself, each with credentials on the request;
    and an ES that quotes the credentials back in its error body (passed through to the
    client that sent them, unchanged, but never logged)."""
    config = base_config(
        fault_es.url,
        model={"name": fault_model.url},
        es={"timeouts": {"read_s": 0.3}},
        rerank={"budget_ms": 500},
        tuning={
            "es": {"max_response_bytes": 1 << 20},
            "http": {"max_body_bytes": 4096, "client_read_timeout_s": 0.3},
        },
    )
    auth = {"Authorization": SECRET}
    own_errors: list[str] = []
    with capture_all_logs() as logs:
        async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:

            async def call(
                mode: str, method: str, path: str, expect: int, **kw: Any
            ) -> dict[str, Any]:
                fault_es.mode = mode
                kw["headers"] = {**auth, **kw.get("headers", {})}
                async with s.request(method, sc.url + path, **kw) as r:
                    assert r.status == expect, (mode, path, await r.text())
                    return dict(await r.json())

            search = {"json": multi_match(QUERY)}
            # ES's own error quoting the credentials: passed through unchanged.
            fault_es.status = 401
            body = await call("status", "POST", "/faults/_search", 401, **search)
            assert SECRET in body["error"]["reason"]
            # The sidecar's own errors.
            for mode, method, path, expect, kw in [
                ("slow", "POST", "/faults/_search", 504, search),
                ("slow", "GET", "/faults/_count", 504, {}),
                ("truncated", "POST", "/faults/_search", 502, search),
                ("ok", "POST", "/faults/_search", 413, {"data": b"{" + b" " * 8000 + b"}"}),
                (
                    "ok",
                    "POST",
                    "/faults/_search",
                    400,
                    {"json": {"query": {"match_all": {}}, "rerank": {"window": "x"}}},
                ),
                ("ok", "POST", "/_sidecar/v1/rerank", 400, {"data": b"\xff", "headers": JSON_TYPE}),
            ]:
                fault_es.delay_s = 1.0
                body = await call(mode, method, path, expect, **kw)
                es_error(body)
                own_errors.append(str(body))
            # ES answers the sidecar cannot rerank (not JSON, too large to hold) are not
            # the sidecar's errors: the client gets ES's own answer to its own request.
            for mode in ("invalid_json", "huge"):
                fault_es.mode = mode
                async with s.post(f"{sc.url}/faults/_search", headers=auth, **search) as r:
                    assert r.status == 200, mode
                    assert r.headers["X-Rerank"].startswith("skipped; reason="), mode
                    await r.read()
            fault_es.mode = "ok"
            await fault_es.go_down()
            body = await call("down", "GET", "/faults/_search", 502)
            own_errors.append(str(body))
            fault_es.mode = "ok"
            await fault_es.come_back()
            metrics = await _metrics(s, sc.url)
    _no_secret("\n".join(own_errors))
    _no_secret(metrics)
    _no_secret(logs.text)
    assert "sidecar.access" in logs.text  # the capture did see the request logs


@pytest.mark.parametrize("failure", ["error", "garbage", "hang"])
async def test_remote_reranker_failure_leaks_no_keys(
    fault_es: FaultES, fault_model: FaultModel, failure: str
) -> None:
    """The remote rerank server fails, echoing the API key the sidecar sent it: the key and
    the client's credentials reach no log line, metric or response."""
    fault_model.mode = failure
    config = base_config(
        fault_es.url,
        model={"name": fault_model.url, "remote": {"api_key": API_KEY}},
        api={"timeout_s": 0.5},
        rerank={"budget_ms": 400},
        tuning={"remote": {"read_timeout_s": 0.5}},
    )
    seen: list[str] = []
    with capture_all_logs() as logs:
        async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:
            async with s.post(
                f"{sc.url}/faults/_search",
                json=multi_match(QUERY),
                headers={"Authorization": SECRET},
            ) as r:
                assert r.status == 200
                assert r.headers["X-Rerank"].startswith("fallback")
                seen.append(await r.text())
            async with s.post(
                f"{sc.url}/_sidecar/v1/rerank",
                json={"query": QUERY, "documents": ["a", "b"]},
                headers={"Authorization": SECRET},
            ) as r:
                assert r.status == 503
                seen.append(es_error(await r.json())[1])
            seen.append(await _metrics(s, sc.url))
    _no_secret("\n".join(seen), API_KEY, *SECRET_PARTS)
    _no_secret(logs.text, API_KEY, *SECRET_PARTS)


def _request(headers: list[tuple[str, str]], path: str = "/_sidecar/health") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", *[f"{k}: {v}" for k, v in headers]]
    return ("\r\n".join([*lines, "Connection: close", "", ""])).encode()


async def test_header_limits_refuse_with_400_and_the_process_stays_up(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    config = base_config(fault_es.url, model={"name": fault_model.url})
    big_token = "Bearer " + "s3cr3t" * 3000  # 18 KB: past max_field_size (16 KiB)
    with capture_all_logs() as logs:
        async with running_sidecar(config, wait_model=False) as sc:
            cases = [
                [(f"X-Many-{i}", "v") for i in range(200)],  # past max_headers (128)
                [("Authorization", big_token)],
                [("X-Big", "x" * 20000)],
            ]
            for headers in cases:
                answer = await raw_exchange(sc.url, _request(headers))
                assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
                reason = answer.split(b"\r\n\r\n", 1)[1]
                assert reason, "a 400 says why"
            answer = await raw_exchange(sc.url, _request([], "/" + "a" * 20000))
            assert b" 400 " in answer.split(b"\r\n", 1)[0]
            # What ES accepts (12 KB of headers) still goes through to ES.
            answer = await raw_response(
                sc.url, _request([("Authorization", "Bearer " + "t" * 12000)], "/idx/_count")
            )
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            assert (await raw_response(sc.url, _request([])))[:12] == b"HTTP/1.1 200"
    # aiohttp quotes the offending line in its exception; the log must not.
    _no_secret(logs.text, "s3cr3ts3cr3t")
    assert "refused a malformed HTTP request" in logs.text


async def test_header_limits_are_configurable(fault_es: FaultES, fault_model: FaultModel) -> None:
    config = base_config(
        fault_es.url,
        model={"name": fault_model.url},
        tuning={"http": {"max_headers": 20, "max_field_size": 2048, "max_line_size": 2048}},
    )
    async with running_sidecar(config, wait_model=False) as sc:
        ok = await raw_response(sc.url, _request([(f"X-H{i}", "v") for i in range(10)]))
        assert ok.startswith(b"HTTP/1.1 200")
        for request in (
            _request([(f"X-H{i}", "v") for i in range(30)]),
            _request([("X-Big", "x" * 3000)]),
            _request([], "/" + "a" * 3000),
        ):
            answer = await raw_exchange(sc.url, request)
            assert b" 400 " in answer.split(b"\r\n", 1)[0], answer[:100]
        # Many refused connections at once: still serving.
        await asyncio.gather(
            *(raw_exchange(sc.url, _request([("X-Big", "x" * 3000)])) for _ in range(50))
        )
        assert (await raw_response(sc.url, _request([])))[:12] == b"HTTP/1.1 200"


def test_header_limit_config_is_validated() -> None:
    from sidecar.config import build_config
    from sidecar.errors import ConfigError

    with pytest.raises(ConfigError, match=r"tuning\.http\.max_field_size"):
        build_config({"tuning": {"http": {"max_field_size": 10}}})
    assert build_config({}).tuning.http.max_headers == 128
