"""The adversarial suite: many small attacks, each a counted probe (see conftest.py), against
a sidecar in front of the secured recording ES stand-in.

* request smuggling and framing variants, on raw sockets;
* path tricks that try to reach /_sidecar/ surfaces from a peer they refuse;
* cache-key variants: requests that differ only in an identity or representation header;
* X-Forwarded-For and Forwarded forms a client writes in front of its proxy's hop;
* secrets in every endpoint's answer, in error bodies and in log lines;
* oversized and deeply nested inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from devtools.fakes import FaultModel
from tests.security.conftest import Probe
from tests.security.support import (
    ADMIN_TOKEN,
    ALICE,
    API_TOKEN,
    CLIENT_SECRET,
    ES_PASSWORD,
    METRICS_TOKEN,
    QUERY,
    REMOTE_KEY,
    SERVICE,
    UI_TOKEN,
    call,
    leaks,
    raw,
    sidecar,
    status_of,
)
from tests.support.reliability import capture_all_logs
from tests.support.secure_es import SecureES

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def _post(headers: bytes, body: bytes) -> bytes:
    return b"POST /docs/_doc/1 HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body


SMUGGLING: list[tuple[str, bytes]] = [
    (
        "CL.TE",
        _post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    ),
    (
        "TE.CL",
        _post(
            b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        ),
    ),
    (
        "two Content-Lengths",
        _post(b"Content-Length: 5\r\nContent-Length: 41\r\n", b"hello" + SMUGGLED),
    ),
    ("Content-Length list", _post(b"Content-Length: 5, 41\r\n", b"hello" + SMUGGLED)),
    ("signed Content-Length", _post(b"Content-Length: +5\r\n", b"hello" + SMUGGLED)),
    ("xchunked", _post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    (
        "chunked, identity",
        _post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n" + SMUGGLED),
    ),
    ("gzip, chunked", _post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("space before colon", _post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    (
        "tab in TE",
        _post(b"Transfer-Encoding:\tchunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n" + SMUGGLED),
    ),
    ("obs-fold TE", _post(b"X-A: b\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("quoted chunked", _post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n" + SMUGGLED)),
    (
        "two TE lines",
        _post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", b"0\r\n\r\n" + SMUGGLED),
    ),
    (
        "chunk size overflow",
        _post(b"Transfer-Encoding: chunked\r\n", b"ffffffffffffffff1\r\nx\r\n0\r\n\r\n" + SMUGGLED),
    ),
    (
        "chunk size with junk",
        _post(b"Transfer-Encoding: chunked\r\n", b"5 x\r\nhello\r\n0\r\n\r\n" + SMUGGLED),
    ),
    ("bare LF in chunks", _post(b"Transfer-Encoding: chunked\r\n", b"5\nhello\n0\n\n" + SMUGGLED)),
    ("chunk extension", _post(b"Transfer-Encoding: chunked\r\n", b"0;a=b\r\n\r\n" + SMUGGLED)),
    (
        "bare LF request",
        b"POST /docs/_doc/1 HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello" + SMUGGLED,
    ),
    ("NUL in a header", _post(b"X-A: a\x00b\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED)),
    ("CR in a header", _post(b"X-A: a\rb\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED)),
    ("HTTP/0.9", b"GET /smuggled\r\n\r\n"),
    (
        "HTTP/1.0 keep-alive body",
        b"POST /docs/_doc/1 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"
        + SMUGGLED,
    ),
    (
        "upgrade h2c",
        _post(
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 5\r\n",
            b"hello",
        ),
    ),
    (
        "Expect 100-continue",
        _post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED),
    ),
    (
        "Connection names Content-Length",
        _post(b"Connection: Content-Length\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED),
    ),
]


@pytest.mark.parametrize(("name", "attack"), SMUGGLING, ids=[n for n, _ in SMUGGLING])
async def test_probe_request_smuggling(
    secured_es: SecureES, model: FaultModel, probe: Probe, name: str, attack: bytes
) -> None:
    async with sidecar(secured_es, model, wait_model=False) as sc:
        answer = await raw(sc.url, attack, read_timeout=3)
        after = await call(sc.url, "GET", "/docs/_count")
        health = await call(sc.url, "GET", "/_sidecar/health")
    paths = [s.raw_path for s in secured_es.seen]
    # A request after the first one's end, by the standard framing, is the client's own
    # next request (pipelining): it must then be answered on the client's connection too.
    # Smuggled is a request ES sees that the client was not answered for.
    answered = answer.count(b"HTTP/1.1 ") + answer.count(b"HTTP/1.0 ")
    hidden = any("smuggled" in p for p in paths) and answered < 2
    probe.check(f"{name}: no request reaches ES unanswered", not hidden, (paths, answered))
    probe.check(f"{name}: the next request is itself", paths[-1:] == ["/docs/_count"], paths)
    probe.check(f"{name}: still serving", after.status == 200 and health.status == 200)
    probe.check(
        f"{name}: an answer or a refusal, never a 500", status_of(answer) != 500, answer[:80]
    )


# --- path tricks on /_sidecar ---------------------------------------------------------------

SIDECAR_PATHS = [
    "/_sidecar/admin/config",
    "/_sidecar/%61dmin/config",
    "/_sidecar/admin%2Fconfig",
    "/_sidecar//admin/config",
    "/_sidecar/./admin/config",
    "/_sidecar/x/../admin/config",
    "/_sidecar/admin/config/",
    "/_sidecar/admin/config?pretty",
    "/_sidecar/admin/config%3F",
    "/_sidecar/admin/config;x",
    "/_sidecar/admin/config%00",
    "/_sidecar/ui/../admin/config",
    "/_sidecar/ui/%2e%2e/admin/config",
    "/%5Fsidecar/admin/config",
    "/_sidecar%2Fadmin/config",
    "/_SIDECAR/admin/config",
    "//_sidecar/admin/config",
    "/_sidecar/v1/rerank",
    "/_sidecar//v1/rerank",
    "/_sidecar/v1/rerank/",
    "/_sidecar/rerank",
    "/_sidecar/%76%31/rerank",
    "/_sidecar/ui",
    "/_sidecar/ui/",
    "/_sidecar/ui/index.html",
    "/_sidecar/ui/app.js",
    "/_sidecar/metrics",
    "/_sidecar/metrics?name[]=x",
    "/_sidecar/unknown",
    "/_sidecar",
]


async def test_probe_path_tricks_on_sidecar_surfaces(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    one = {"allow_from": ["127.0.0.1/32"]}
    over = {"admin": {**one, "token": ADMIN_TOKEN}, "api": one, "ui": one, "metrics": one}
    body = json.dumps({"query": "q", "documents": ["a"]}).encode()
    async with sidecar(secured_es, model, **over) as sc:
        for path in SIDECAR_PATHS:
            for method in ("GET", "POST"):
                request = (
                    f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {ADMIN_TOKEN}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode() + body
                secured_es.clear()
                answer = await _raw_from(sc.url, request, "127.0.0.2")
                text = answer.decode("latin-1")
                revealed = any(
                    marker in text
                    for marker in (
                        '"allow_from"',
                        "relevance_score",
                        "<!doctype",
                        "<html",
                        "sidecar_requests",
                        ADMIN_TOKEN,
                    )
                )
                probe.check(
                    f"{method} {path}: a refused peer learns nothing", not revealed, text[:200]
                )
                leaked = [s.raw_path for s in secured_es.seen if s.raw_path.startswith("/_sidecar")]
                probe.check(
                    f"{method} {path}: the sidecar's namespace never reaches ES", not leaked, leaked
                )


async def _raw_from(url: str, data: bytes, source: str) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(5):
                while chunk := await reader.read(65536):
                    chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# --- cache-key variants ---------------------------------------------------------------------

#: Pairs of header sets on otherwise identical searches that must not share a cache entry.
KEY_VARIANTS: list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]] = [
    ("Authorization", [("Authorization", ALICE)], [("Authorization", CLIENT_SECRET)]),
    ("Authorization vs none", [("Authorization", ALICE)], []),
    (
        "Authorization scheme case",
        [("Authorization", "Bearer alice-token")],
        [("Authorization", "bearer alice-token")],
    ),
    (
        "repeated Authorization",
        [("Authorization", ALICE)],
        [("Authorization", ALICE), ("Authorization", "Bearer x")],
    ),
    (
        "ApiKey",
        [("Authorization", "ApiKey YWxpY2Uta2V5OnNlY3JldA==")],
        [("Authorization", "ApiKey Ym9iLWtleTpzZWNyZXQ=")],
    ),
    (
        "unknown scheme",
        [("Authorization", "Negotiate YWxpY2U=")],
        [("Authorization", "Negotiate Ym9i")],
    ),
    ("Cookie", [("Cookie", "session=sess-alice")], [("Cookie", "session=sess-bob")]),
    (
        "Cookie order",
        [("Cookie", "a=1; session=sess-alice")],
        [("Cookie", "session=sess-alice; a=1")],
    ),
    ("run-as", [("es-security-runas-user", "alice")], [("es-security-runas-user", "bob")]),
    (
        "secondary auth",
        [("es-secondary-authorization", "Basic YQ==")],
        [("es-secondary-authorization", "Basic Yg==")],
    ),
    (
        "client authentication",
        [("ES-Client-Authentication", "SharedSecret a")],
        [("ES-Client-Authentication", "SharedSecret b")],
    ),
    (
        "proxy user",
        [("x-proxy-user", "alice"), ("x-proxy-roles", "everyone")],
        [("x-proxy-user", "bob"), ("x-proxy-roles", "everyone")],
    ),
    (
        "proxy roles",
        [("x-proxy-user", "alice"), ("x-proxy-roles", "hr")],
        [("x-proxy-user", "alice"), ("x-proxy-roles", "ops")],
    ),
    ("proxy attributes", [("x-proxy-ext-dept", "a")], [("x-proxy-ext-dept", "b")]),
    (
        "impersonation",
        [("opendistro_security_impersonate_as", "alice")],
        [("opendistro_security_impersonate_as", "bob")],
    ),
    ("tenant", [("securitytenant", "a")], [("securitytenant", "b")]),
    ("Accept-Encoding", [("Accept-Encoding", "gzip")], []),
    (
        "Accept",
        [("Accept", "application/json")],
        [("Accept", "application/vnd.elasticsearch+json; compatible-with=8")],
    ),
    (
        "Content-Type",
        [("Content-Type", "application/json")],
        [("Content-Type", "application/vnd.elasticsearch+json; compatible-with=8")],
    ),
    (
        "API version",
        [("Elastic-Api-Version", "2023-10-31")],
        [("Elastic-Api-Version", "2099-01-01")],
    ),
]


async def test_probe_cache_key_variants(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    body = json.dumps(QUERY).encode()
    async with sidecar(secured_es, model, rerank={"response_cache": {"enabled": True}}) as sc:
        for i, (name, first, second) in enumerate(KEY_VARIANTS):
            for headers in (first, second):
                # The service account may run as and proxy for others (secure_es.py).
                keyed = any(k == "Authorization" for k, _ in first)
                sent = headers if keyed else [("Authorization", SERVICE), *headers]
                if not any(k.lower() == "content-type" for k, _ in sent):
                    sent = [*sent, ("Content-Type", "application/json")]
                secured_es.clear()
                answer = await call(sc.url, "POST", f"/docs/_search?v={i}", headers=sent, data=body)
                asked = len(secured_es.searches())
                if headers is first:
                    probe.check(
                        f"{name}: the first search is reranked",
                        answer.rerank in ("applied", "cached"),
                        answer.rerank,
                    )
                else:
                    probe.check(
                        f"{name}: a different value is not a hit", asked == 1, answer.rerank
                    )


# --- X-Forwarded-For and Forwarded forms ----------------------------------------------------

#: (proxy header, what the client wrote, what the trusted proxy appended, expected mode).
#: The rule turns reranking off for 10.0.0.0/8; the real client is outside it unless the
#: proxy says otherwise.
HOPS: list[tuple[str, list[tuple[str, str]], list[tuple[str, str]], str]] = [
    (
        "x-forwarded-for",
        [("X-Forwarded-For", "10.1.1.1")],
        [("X-Forwarded-For", "203.0.113.5")],
        "on",
    ),
    (
        "x-forwarded-for",
        [("X-Forwarded-For", "10.1.1.1, 10.2.2.2")],
        [("X-Forwarded-For", "203.0.113.5")],
        "on",
    ),
    ("x-forwarded-for", [], [("X-Forwarded-For", "10.1.1.1, 203.0.113.5")], "on"),
    (
        "x-forwarded-for",
        [("X-Forwarded-For", "10.1.1.1,")],
        [("X-Forwarded-For", "203.0.113.5")],
        "on",
    ),
    (
        "x-forwarded-for",
        [("X-Forwarded-For", "  10.1.1.1  ")],
        [("X-Forwarded-For", " 203.0.113.5 ")],
        "on",
    ),
    (
        "x-forwarded-for",
        [("X-Forwarded-For", "10.1.1.1:80")],
        [("X-Forwarded-For", "203.0.113.5:4711")],
        "on",
    ),
    (
        "x-forwarded-for",
        [("X-Forwarded-For", "garbage, 10.1.1.1")],
        [("X-Forwarded-For", "203.0.113.5")],
        "on",
    ),
    (
        "x-forwarded-for",
        [("Forwarded", "for=10.1.1.1")],
        [("X-Forwarded-For", "203.0.113.5")],
        "on",
    ),
    ("x-forwarded-for", [("X-Real-IP", "10.1.1.1")], [("X-Forwarded-For", "203.0.113.5")], "on"),
    ("x-forwarded-for", [("X-Forwarded-For", "10.1.1.1")], [("X-Forwarded-For", "unknown")], "on"),
    ("x-forwarded-for", [], [("X-Forwarded-For", "10.1.1.1:5555")], "off"),
    ("x-forwarded-for", [], [("X-Forwarded-For", "[2001:db8::9]:443")], "on"),
    ("x-forwarded-for", [], [("X-Forwarded-For", "::ffff:10.1.1.1")], "off"),
    ("x-forwarded-for", [], [("X-Forwarded-For", "[::ffff:10.1.1.1]:80")], "off"),
    (
        "x-forwarded-for",
        [("X-Forwarded-For", ",".join(["10.9.9.9"] * 500))],
        [("X-Forwarded-For", "203.0.113.5")],
        "on",
    ),
    ("forwarded", [("Forwarded", "for=10.1.1.1")], [("Forwarded", "for=203.0.113.5")], "on"),
    (
        "forwarded",
        [("Forwarded", 'for="10.1.1.1, for=10.2.2.2"')],
        [("Forwarded", "for=203.0.113.5")],
        "on",
    ),
    (
        "forwarded",
        [("Forwarded", "for=10.1.1.1;by=10.0.0.1")],
        [("Forwarded", 'for="203.0.113.5:443";proto=https')],
        "on",
    ),
    ("forwarded", [("X-Forwarded-For", "10.1.1.1")], [("Forwarded", "for=203.0.113.5")], "on"),
    ("forwarded", [("Forwarded", "for=10.1.1.1")], [("Forwarded", "for=_hidden")], "on"),
    ("forwarded", [("Forwarded", "for=10.1.1.1")], [("Forwarded", "proto=https")], "on"),
    ("forwarded", [("Forwarded", "for=10.1.1.1")], [("Forwarded", "FOR=203.0.113.5")], "on"),
    ("forwarded", [], [("Forwarded", 'for="10.1.1.1:8080"')], "off"),
    ("forwarded", [], [("Forwarded", 'for="[::ffff:10.1.1.1]:8080"')], "off"),
    ("forwarded", [], [("Forwarded", "for=203.0.113.5, for=10.1.1.1")], "off"),
]


async def test_probe_forwarded_forms(secured_es: SecureES, model: FaultModel, probe: Probe) -> None:
    for proxy_header in ("x-forwarded-for", "forwarded"):
        rollout = {
            "trusted_proxies": ["127.0.0.1/32"],
            "proxy_header": proxy_header,
            "rules": [{"name": "internal", "clients": ["10.0.0.0/8"], "mode": "off"}],
        }
        async with sidecar(secured_es, model, rollout=rollout) as sc:
            for header, written, appended, expected in HOPS:
                if header != proxy_header:
                    continue
                sent = [("Authorization", ALICE), *written, *appended]
                answer = await call(
                    sc.url,
                    "POST",
                    "/docs/_search",
                    source="127.0.0.1",
                    headers=sent,
                    json_body=QUERY,
                )
                mode = "off" if "rollout_off" in answer.rerank else "on"
                probe.check(
                    f"{header} {written} + {appended}: {expected}", mode == expected, answer.rerank
                )
            # From a peer that is not a trusted proxy, no forwarding header counts.
            untrusted = [
                ("Authorization", ALICE),
                ("X-Forwarded-For", "10.1.1.1"),
                ("Forwarded", "for=10.1.1.1"),
            ]
            answer = await call(
                sc.url,
                "POST",
                "/docs/_search",
                source="127.0.0.2",
                headers=untrusted,
                json_body=QUERY,
            )
            probe.check(
                f"{proxy_header}: an untrusted peer's header is ignored",
                "rollout_off" not in answer.rerank,
                answer.rerank,
            )


# --- secrets: every endpoint, every error body, every log line ------------------------------


async def test_probe_no_secret_in_any_answer_or_log(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    over = {
        "es": {"auth": {"username": "service", "password": ES_PASSWORD}},
        "model": {"name": model.url, "remote": {"api_key": REMOTE_KEY}},
        "admin": {"token": ADMIN_TOKEN},
        "api": {"token": API_TOKEN},
        "ui": {"token": UI_TOKEN},
        "metrics": {"token": METRICS_TOKEN},
        "rerank": {"response_cache": {"enabled": True}},
        "tuning": {"limits": {"max_query_chars": 64}, "http": {"max_body_bytes": 1 << 20}},
    }
    client = [("Authorization", CLIENT_SECRET)]
    requests = [
        ("GET", "/_sidecar/health", [], None),
        ("GET", "/_sidecar/ready", [], None),
        ("GET", "/_sidecar/openapi.yaml", [], None),
        ("GET", "/_sidecar/metrics", [("Authorization", f"Bearer {METRICS_TOKEN}")], None),
        ("GET", "/_sidecar/metrics", client, None),
        ("GET", "/_sidecar/admin/config", [("Authorization", f"Bearer {ADMIN_TOKEN}")], None),
        ("GET", "/_sidecar/admin/cache", [("Authorization", f"Bearer {ADMIN_TOKEN}")], None),
        ("GET", "/_sidecar/admin/rollout", client, None),
        ("GET", "/_sidecar/admin/breaker", [("Authorization", "Bearer wrong")], None),
        ("GET", "/_sidecar/ui", [("Authorization", f"Bearer {UI_TOKEN}")], None),
        ("GET", "/_sidecar/ui", client, None),
        (
            "POST",
            "/_sidecar/v1/rerank",
            [("Authorization", f"Bearer {API_TOKEN}")],
            {"query": "q", "documents": ["a"]},
        ),
        ("POST", "/_sidecar/v1/rerank", client, {"query": "q", "documents": ["a"]}),
        (
            "POST",
            "/_sidecar/v1/rerank",
            [("Authorization", f"Bearer {API_TOKEN}")],
            {"query": "q" * 100, "documents": ["a"]},
        ),
        (
            "POST",
            "/_sidecar/v1/rerank",
            [("Authorization", f"Bearer {API_TOKEN}"), ("Content-Type", "text/plain")],
            b"x",
        ),
        ("GET", "/_sidecar/nothing", client, None),
        ("POST", "/_sidecar/health", client, None),
        ("POST", "/docs/_search", client, QUERY),
        ("POST", "/docs/_search", client, QUERY),
        ("POST", "/docs/_search", client, {**QUERY, "rerank": {"window": "x"}}),
        ("POST", "/docs/_search", client, {**QUERY, "rerank": {"query": "q" * 100}}),
        ("POST", "/docs/_search", client, b"{" + b" " * (2 << 20) + b"}"),
        ("POST", "/_msearch", client, b'{"index": "docs"}\n' + json.dumps(QUERY).encode() + b"\n"),
        ("GET", "/docs/_count", client, None),
        ("GET", "/docs/_search", [], None),
    ]
    with capture_all_logs() as logs:
        async with sidecar(secured_es, model, **over) as sc:
            for method, path, headers, body in requests:
                kwargs: dict[str, object] = {}
                if isinstance(body, bytes):
                    kwargs["data"] = body
                    if not any(k == "Content-Type" for k, _ in headers):
                        headers = [*headers, ("Content-Type", "application/json")]
                elif body is not None:
                    kwargs["json_body"] = body
                answer = await call(sc.url, method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
                seen = answer.body + json.dumps(answer.headers).encode()
                probe.check(
                    f"{method} {path} ({answer.status}): no configured secret",
                    not leaks(seen),
                    leaks(seen),
                )
                own = not any(s.raw_path == path for s in secured_es.seen[-1:])
                if own:
                    probe.check(
                        f"{method} {path}: the sidecar's answer quotes no client credential",
                        CLIENT_SECRET.split()[1].encode() not in seen,
                    )
                try:
                    error = json.loads(answer.body)["error"] if answer.status >= 400 else None
                except (ValueError, KeyError, TypeError):
                    error = "not json"
                if answer.status >= 400 and own:
                    probe.check(
                        f"{method} {path}: the error is ES-shaped",
                        isinstance(error, dict) and "root_cause" in error,
                        answer.body[:120],
                    )
        text = logs.text
    probe.check("no configured secret in any log line", not leaks(text), leaks(text))
    probe.check("no client credential in any log line", CLIENT_SECRET.split()[1] not in text)
    probe.check("the capture saw the access log", "sidecar.access" in text)


# --- oversized and deep inputs --------------------------------------------------------------

DEEP = b"[" * 100_000
INPUTS: list[tuple[str, str, str, bytes]] = [
    ("deep query", "POST", "/docs/_search", b'{"query":' + DEEP),
    (
        "deep rerank object",
        "POST",
        "/docs/_search",
        b'{"query":{"match":{"body":"x"}},"rerank":' + b'{"a":' * 50_000,
    ),
    ("deep msearch body", "POST", "/_msearch", b'{"index":"docs"}\n{"query":' + DEEP + b"\n"),
    ("deep API body", "POST", "/_sidecar/v1/rerank", b'{"query":' + DEEP),
    ("huge number", "POST", "/docs/_search", b'{"size": 1e999999, "query":{"match":{"body":"x"}}}'),
    (
        "huge size",
        "POST",
        "/docs/_search",
        b'{"size": 100000000000000000000000000000, "query":{"match":{"body":"x"}}}',
    ),
    (
        "huge window",
        "POST",
        "/docs/_search",
        b'{"query":{"match":{"body":"x"}},"rerank":{"window":1000000000}}',
    ),
    (
        "many msearch lines",
        "POST",
        "/_msearch",
        b'{"index":"docs"}\n{"query":{"match":{"body":"renew"}}}\n' * 5000,
    ),
    (
        "long rerank.query",
        "POST",
        "/docs/_search",
        json.dumps({**QUERY, "rerank": {"query": "renew " * 500_000}}).encode(),
    ),
    (
        "long rerank.instruction",
        "POST",
        "/docs/_search",
        json.dumps({**QUERY, "rerank": {"instruction": "x" * 3_000_000}}).encode(),
    ),
    (
        "long query text",
        "POST",
        "/docs/_search",
        json.dumps({"query": {"match": {"body": "renew " * 500_000}}}).encode(),
    ),
    (
        "many query clauses",
        "POST",
        "/docs/_search",
        json.dumps(
            {"query": {"bool": {"should": [{"match": {"body": f"w{i}"}} for i in range(50_000)]}}}
        ).encode(),
    ),
    (
        "many API documents",
        "POST",
        "/_sidecar/v1/rerank",
        json.dumps({"query": "q", "documents": ["d"] * 5000}).encode(),
    ),
    (
        "long API document",
        "POST",
        "/_sidecar/v1/rerank",
        json.dumps({"query": "q", "documents": ["renew " * 1_000_000]}).encode(),
    ),
    (
        "long API query",
        "POST",
        "/_sidecar/v1/rerank",
        json.dumps({"query": "q" * 3_000_000, "documents": ["d"]}).encode(),
    ),
    ("body over the limit", "POST", "/docs/_search", b"{" + b" " * (11 << 20) + b"}"),
    ("non-UTF-8 body", "POST", "/docs/_search", b'{"query":{"match":{"body":"\xff\xfe"}}}'),
    ("lone surrogate", "POST", "/docs/_search", b'{"query":{"match":{"body":"\\ud800"}}}'),
    ("NUL in the query", "POST", "/docs/_search", b'{"query":{"match":{"body":"a\\u0000b"}}}'),
]


@pytest.mark.parametrize(("name", "method", "path", "body"), INPUTS, ids=[i[0] for i in INPUTS])
async def test_probe_oversized_and_deep_inputs(
    secured_es: SecureES,
    model: FaultModel,
    probe: Probe,
    name: str,
    method: str,
    path: str,
    body: bytes,
) -> None:
    async with sidecar(secured_es, model, tuning={"http": {"max_body_bytes": 10 << 20}}) as sc:
        answer = await call(
            sc.url,
            method,
            path,
            headers={"Authorization": ALICE, "Content-Type": "application/json"},
            data=body,
        )
        health = await call(sc.url, "GET", "/_sidecar/health")
        probe.check(f"{name}: no 500", answer.status != 500, answer.body[:160])
        probe.check(f"{name}: still serving", health.status == 200)
        if answer.status >= 400 and not any(s.raw_path == path for s in secured_es.seen[-1:]):
            try:
                shaped = "root_cause" in json.loads(answer.body)["error"]
            except (ValueError, KeyError, TypeError):
                shaped = False
            probe.check(f"{name}: the sidecar's refusal is ES-shaped", shaped, answer.body[:160])
        if "rerank." in name or "API query" in name:
            probe.check(f"{name}: refused with 400", answer.status == 400, answer.status)
        if name == "long query text":
            probe.check(f"{name}: served", answer.status == 200, answer.status)
            probe.check(
                f"{name}: the model got a capped query",
                len(model.last_query) <= 2048,
                len(model.last_query),
            )
        probe.check(
            f"{name}: nothing echoed at length",
            len(answer.body) < 1 << 20 or path == "/_msearch",
            len(answer.body),
        )
