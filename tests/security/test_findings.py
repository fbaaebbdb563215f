"""One regression test per finding of the security review (issue 12), each against real
sockets: the sidecar in-process on a loopback port, a secured recording ES stand-in that
lets every identity see only its own documents (tests/support/secure_es.py), and the fault
rerank server of devtools.fakes. Finding 8 (special tokens) is tested in tests/models.

Every check is a counted probe (see conftest.py)."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.fakes import FaultModel
from es_integration.sidecar_proc import SidecarProcess
from sidecar.config import SidecarConfig, build_config
from sidecar.errors import ConfigError
from sidecar.rerank.cache import CachedResponse, ResponseCache, ScoreCache
from tests.security.conftest import Probe
from tests.security.support import (
    ADMIN_TOKEN,
    ALICE,
    API_TOKEN,
    BOB,
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
from tests.support.secure_es import SecureES, basic

CACHE_ON = {"response_cache": {"enabled": True}}
LOOPBACK = ("127.0.0.0/8", "::1/128")


def _ids(body: object) -> list[str]:
    if not isinstance(body, dict):
        return []
    return [h["_id"] for h in body.get("hits", {}).get("hits", [])]


# --- 1. the response cache never crosses identities --------------------------------------


@pytest.mark.parametrize(
    ("kind", "first", "second"),
    [
        (
            "run-as",
            {"Authorization": SERVICE, "es-security-runas-user": "alice"},
            {"Authorization": SERVICE, "es-security-runas-user": "bob"},
        ),
        (
            "proxy-auth",
            {"Authorization": SERVICE, "x-proxy-user": "alice", "x-proxy-roles": "hr"},
            {"Authorization": SERVICE, "x-proxy-user": "bob", "x-proxy-roles": "ops"},
        ),
        ("cookie", {"Cookie": "session=sess-alice"}, {"Cookie": "session=sess-bob"}),
        (
            "unknown scheme",
            {"Authorization": "Negotiate YWxpY2U="},
            {"Authorization": "Negotiate Ym9i"},
        ),
    ],
)
async def test_f1_users_behind_one_account_never_share_cached_hits(
    secured_es: SecureES,
    model: FaultModel,
    probe: Probe,
    kind: str,
    first: dict[str, str],
    second: dict[str, str],
) -> None:
    async with sidecar(secured_es, model, rerank=CACHE_ON) as sc:
        one = await call(sc.url, "POST", "/docs/_search", headers=first, json_body=QUERY)
        probe.check(f"{kind}: first user searched", one.status == 200, one.status)
        two = await call(sc.url, "POST", "/docs/_search", headers=second, json_body=QUERY)
        ids = _ids(two.json())
        probe.check(
            f"{kind}: second user gets no private hit of the first", "alice-private" not in ids, ids
        )
        probe.check(f"{kind}: second user sees their own", "bob-private" in ids, ids)
        probe.check(f"{kind}: ES was asked for each user", len(secured_es.searches()) == 2)
        again = await call(sc.url, "POST", "/docs/_search", headers=first, json_body=QUERY)
        probe.check(
            f"{kind}: the same user does hit the cache", again.rerank == "cached", again.rerank
        )


async def test_f1_extra_identity_headers_are_keyed(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    headers = {"Authorization": SERVICE}
    over = {**CACHE_ON, "extra_identity_headers": ["x-tenant", "x-attr-*"]}
    async with sidecar(secured_es, model, rerank=over) as sc:
        for extra in (
            {"X-Tenant": "a"},
            {"X-Tenant": "b"},
            {"X-Attr-Dept": "x"},
            {"X-Attr-Dept": "y"},
        ):
            await call(
                sc.url, "POST", "/docs/_search", headers={**headers, **extra}, json_body=QUERY
            )
        probe.check("each configured header value reached ES", len(secured_es.searches()) == 4)


async def test_f1_cache_hit_only_in_the_encoding_the_client_asked_for(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    async with sidecar(secured_es, model, rerank=CACHE_ON) as sc:
        zipped = {"Authorization": ALICE, "Accept-Encoding": "gzip"}
        first = await call(
            sc.url, "POST", "/docs/_search", headers=zipped, json_body=QUERY, decompress=False
        )
        probe.check("gzip asked, gzip served", first.headers.get("Content-Encoding") == "gzip")
        plain = await call(
            sc.url,
            "POST",
            "/docs/_search",
            headers={"Authorization": ALICE},
            json_body=QUERY,
            decompress=False,
        )
        probe.check(
            "no gzip asked: none served", "Content-Encoding" not in plain.headers, plain.headers
        )
        probe.check("no gzip asked: a plain JSON body", plain.json() is not None, plain.body[:40])
        again = await call(
            sc.url, "POST", "/docs/_search", headers=zipped, json_body=QUERY, decompress=False
        )
        probe.check(
            "the gzip answer is a hit for gzip clients", again.rerank == "cached", again.rerank
        )
        # gzip, or identity (always acceptable): a body the client can read either way.
        zipped_hit = again.headers.get("Content-Encoding") == "gzip"
        text = gzip.decompress(again.body) if zipped_hit else again.body
        probe.check("and it reads as JSON", bool(json.loads(text)))


async def test_f1_cache_hit_replays_no_per_request_header(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    async with sidecar(secured_es, model, rerank=CACHE_ON) as sc:
        first = await call(
            sc.url,
            "POST",
            "/docs/_search",
            headers={"Authorization": ALICE, "X-Opaque-Id": "first-caller"},
            json_body=QUERY,
        )
        probe.check(
            "ES's per-request headers on a miss", first.headers.get("X-Opaque-Id") == "first-caller"
        )
        hit = await call(
            sc.url,
            "POST",
            "/docs/_search",
            headers={"Authorization": ALICE, "X-Opaque-Id": "second"},
            json_body=QUERY,
        )
        probe.check("served from the cache", hit.rerank == "cached", hit.rerank)
        probe.check(
            "a hit echoes this request's X-Opaque-Id",
            hit.headers.get("X-Opaque-Id") == "second",
            hit.headers,
        )
        probe.check(
            "no Set-Cookie from another request", "Set-Cookie" not in hit.headers, hit.headers
        )
        probe.check("no trace header from another request", "X-Trace-Serial" not in hit.headers)
        bare = await call(
            sc.url, "POST", "/docs/_search", headers={"Authorization": ALICE}, json_body=QUERY
        )
        probe.check(
            "no X-Opaque-Id when none was sent", "X-Opaque-Id" not in bare.headers, bare.headers
        )


@pytest.mark.parametrize("verify", ["off", "authenticate"])
async def test_f1_revoked_credential_until_ttl_or_verified_on_each_hit(
    secured_es: SecureES, model: FaultModel, probe: Probe, verify: str
) -> None:
    over = {"response_cache": {"enabled": True, "verify_identity": verify}}
    async with sidecar(secured_es, model, rerank=over) as sc:
        headers = {"Authorization": ALICE}
        first = await call(sc.url, "POST", "/docs/_search", headers=headers, json_body=QUERY)
        probe.check("first search", first.status == 200, first.status)
        hit = await call(sc.url, "POST", "/docs/_search", headers=headers, json_body=QUERY)
        probe.check("a valid credential hits", hit.rerank == "cached", hit.rerank)
        secured_es.revoked.add(ALICE)
        after = await call(sc.url, "POST", "/docs/_search", headers=headers, json_body=QUERY)
        if verify == "off":
            # The documented trade-off: until ttl_s, the cache does not ask ES.
            probe.check(
                "off: served from the cache until ttl_s", after.rerank == "cached", after.rerank
            )
        else:
            probe.check(
                "authenticate: a revoked credential gets ES's 401",
                after.status == 401,
                after.status,
            )
            checks = [s for s in secured_es.seen if s.raw_path == "/_security/_authenticate"]
            probe.check(
                "the check carried the caller's credentials",
                all(c.header("Authorization") == ALICE for c in checks) and checks,
            )
            probe.check("the check carried no body", all(not c.body for c in checks))


# --- 2. no secret leaves, no client borrows the sidecar's rights ---------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"es": {"url": "http://elastic:hunter2-secret@es:9200"}}, "es.url"),
        ({"model": {"name": "http://svc:KEY-hunter2-secret@rerank:8000/v1/rerank"}}, "model.name"),
        (
            {"es": {"auth": {"username": "u", "password": "hunter2-secret", "api_key": "k"}}},
            "es.auth",
        ),
    ],
)
def test_f2_credentials_in_urls_are_refused_at_load(
    probe: Probe, raw: dict[str, object], key: str
) -> None:
    try:
        build_config(raw)
    except ConfigError as exc:
        message = str(exc)
        probe.check("the error names the key", f"config error: {key}" in message, message)
        probe.check("the error does not quote the secret", "hunter2-secret" not in message, message)
    else:
        probe.check(f"{key} with credentials is refused", False)


async def test_f2_the_sidecars_credentials_are_used_only_for_its_own_requests(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    own = {"username": "service", "password": ES_PASSWORD}
    admin = {"token": ADMIN_TOKEN}
    async with sidecar(secured_es, model, es={"auth": own}, admin=admin) as sc:
        ready = await call(sc.url, "GET", "/_sidecar/ready")
        probe.check("ready", ready.status == 200, ready.body[:200])
        probes = [s for s in secured_es.seen if s.raw_path == "/"]
        expected = basic("service", ES_PASSWORD)
        probe.check(
            "the readiness probe authenticates as the sidecar",
            any(s.header("Authorization") == expected for s in probes),
        )
        secured_es.clear()
        anon = await call(sc.url, "POST", "/docs/_search", json_body=QUERY)
        probe.check("an anonymous client is anonymous to ES", anon.status == 401, anon.status)
        probe.check(
            "ES saw no Authorization on it",
            all(s.header("Authorization") is None for s in secured_es.seen),
        )
        secured_es.clear()
        mine = await call(
            sc.url, "POST", "/docs/_search", headers={"Authorization": BOB}, json_body=QUERY
        )
        probe.check("a client's own Authorization works (no 500)", mine.status == 200, mine.status)
        probe.check(
            "and is the only one ES saw",
            [s.header("Authorization") for s in secured_es.seen] == [BOB],
        )
        count = await call(sc.url, "GET", "/docs/_count")
        probe.check(
            "pass-through: anonymous stays anonymous",
            secured_es.seen[-1].header("Authorization") is None,
            count.status,
        )
        config = await call(
            sc.url,
            "GET",
            "/_sidecar/admin/config",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        probe.check(
            "admin config redacts the password", config.json()["es"]["auth"]["password"] == "***"
        )
        for name, answer in (("ready", ready), ("admin config", config)):
            probe.check(f"{name} holds no secret", not leaks(answer.body), answer.body[:300])


def test_f2_check_config_and_startup_log_show_no_secret(
    probe: Probe, tmp_path: Path, secured_es_sync: tuple[str, FaultModel]
) -> None:
    es_url, model = secured_es_sync
    config = {
        "es": {"auth": {"username": "service", "password": ES_PASSWORD}},
        "model": {"remote": {"api_key": REMOTE_KEY}},
        "admin": {"token": ADMIN_TOKEN},
        "api": {"token": API_TOKEN},
        "ui": {"token": UI_TOKEN},
        "metrics": {"token": METRICS_TOKEN},
    }
    log = tmp_path / "sidecar.log"
    with SidecarProcess.start(
        es_url, log_path=log, model=model.url, config=config, wait_ready=True
    ) as proc:
        assert proc.config_path is not None
        shown = subprocess.run(
            [
                sys.executable,
                "-m",
                "sidecar.cli",
                "check-config",
                "--config",
                str(proc.config_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    probe.check("check-config ran", shown.returncode == 0, shown.stderr[-300:])
    probe.check(
        "check-config shows no secret", not leaks(shown.stdout + shown.stderr), leaks(shown.stdout)
    )
    probe.check("check-config marks them", shown.stdout.count("'***'") >= 6, shown.stdout[:200])
    text = log.read_text()
    probe.check("the start-up log says where it forwards", "forwarding to" in text)
    probe.check("the log shows no secret", not leaks(text), leaks(text))


async def test_f2_model_names_shown_to_clients_carry_no_key(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    remote = {"name": model.url, "remote": {"api_key": REMOTE_KEY}}
    async with sidecar(secured_es, model, model=remote) as sc:
        # The annotations (asked for) name the model.
        explained = {**QUERY, "rerank": {"explain": True}}
        answers = [
            await call(
                sc.url,
                "POST",
                "/docs/_search",
                headers={"Authorization": ALICE},
                json_body=explained,
            ),
            await call(
                sc.url, "POST", "/_sidecar/v1/rerank", json_body={"query": "q", "documents": ["a"]}
            ),
            await call(sc.url, "GET", "/_sidecar/ready"),
        ]
        status = answers[0].json().get("_rerank", {})
        probe.check("the search names its model", status.get("model") == model.url, status)
        for answer in answers:
            probe.check(
                "no key in what clients see",
                not leaks(answer.body, (REMOTE_KEY,)),
                answer.body[:200],
            )


# --- 3. each surface has its own allow_from and token; safe defaults -------------------------


def test_f3_ui_and_rerank_api_are_loopback_only_by_default(probe: Probe) -> None:
    defaults = SidecarConfig()
    for surface in ("ui", "api"):
        section = getattr(defaults, surface, None)
        allow = tuple(getattr(section, "allow_from", ("0.0.0.0/0",)))
        probe.check(f"{surface} defaults to loopback", allow == LOOPBACK, allow)


async def test_f3_each_surface_answers_only_its_allowed_peers(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    only_one = {"allow_from": ["127.0.0.1/32"]}
    over = {
        "api": only_one,
        "ui": only_one,
        "metrics": only_one,
        "admin": {**only_one, "token": ADMIN_TOKEN},
    }
    async with sidecar(secured_es, model, **over) as sc:
        paths = [
            ("POST", "/_sidecar/v1/rerank", {"query": "q", "documents": ["a"]}),
            ("GET", "/_sidecar/ui", None),
            ("GET", "/_sidecar/metrics", None),
            ("GET", "/_sidecar/admin/config", None),
        ]
        for method, path, body in paths:
            near = await call(
                sc.url,
                method,
                path,
                source="127.0.0.1",
                json_body=body,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            probe.check(f"{path} from an allowed peer", near.status == 200, near.status)
            far = await call(
                sc.url,
                method,
                path,
                source="127.0.0.2",
                json_body=body,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            probe.check(f"{path} from another peer is 404", far.status == 404, far.status)
            probe.check(
                f"{path} from another peer reveals nothing",
                b"relevance_score" not in far.body and b"<html" not in far.body.lower(),
            )
        probe.check(
            "none of it went to ES", not any("_sidecar" in s.raw_path for s in secured_es.seen)
        )


@pytest.mark.parametrize(
    ("section", "path", "method", "body", "token"),
    [
        ("api", "/_sidecar/v1/rerank", "POST", {"query": "q", "documents": ["a"]}, API_TOKEN),
        ("ui", "/_sidecar/ui", "GET", None, UI_TOKEN),
        ("metrics", "/_sidecar/metrics", "GET", None, METRICS_TOKEN),
    ],
)
async def test_f3_each_surface_takes_its_own_token(
    secured_es: SecureES,
    model: FaultModel,
    probe: Probe,
    section: str,
    path: str,
    method: str,
    body: object,
    token: str,
) -> None:
    async with sidecar(secured_es, model, **{section: {"token": token}}) as sc:
        none = await call(sc.url, method, path, json_body=body)
        probe.check(f"{section}: 401 without the token", none.status == 401, none.status)
        wrong = await call(
            sc.url, method, path, json_body=body, headers={"Authorization": "Bearer nope"}
        )
        probe.check(f"{section}: 403 with a wrong one", wrong.status == 403, wrong.status)
        other = await call(
            sc.url, method, path, json_body=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        probe.check(
            f"{section}: another surface's token is wrong here", other.status == 403, other.status
        )
        right = await call(
            sc.url, method, path, json_body=body, headers={"Authorization": f"Bearer {token}"}
        )
        probe.check(f"{section}: 200 with it", right.status == 200, right.status)
        for answer in (none, wrong, other):
            probe.check(
                f"{section}: refusals quote no token", not leaks(answer.body), answer.body[:200]
            )
        if section == "ui":
            probe.check(
                "ui: a browser is offered Basic",
                "Basic" in none.headers.get("WWW-Authenticate", ""),
            )


async def test_f3_rerank_api_lives_under_sidecar_and_the_root_path_is_opt_in(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    doc = {"query": "library card", "documents": ["library card renewal", "bananas"]}
    async with sidecar(secured_es, model) as sc:
        for path in ("/_sidecar/v1/rerank", "/_sidecar/rerank"):
            answer = await call(sc.url, "POST", path, json_body=doc)
            probe.check(
                f"{path} is the API",
                answer.status == 200 and b"relevance_score" in answer.body,
                answer.status,
            )
        for path in ("/v1/rerank", "/rerank"):
            secured_es.clear()
            answer = await call(sc.url, "POST", path, json_body=doc)
            probe.check(
                f"{path} belongs to ES by default",
                [s.raw_path for s in secured_es.seen] == [path],
                answer.status,
            )
    async with sidecar(secured_es, model, api={"cohere_root_path": True}) as sc:
        secured_es.clear()
        answer = await call(sc.url, "POST", "/v1/rerank", json_body=doc)
        probe.check(
            "cohere_root_path serves /v1/rerank",
            b"relevance_score" in answer.body and not secured_es.seen,
        )


# --- 4. X-Forwarded-For and Forwarded: walked from the right -----------------------------


@pytest.mark.parametrize(
    ("proxy_header", "headers", "expected"),
    [
        # A client wrote the first line; the trusted proxy appended the second.
        (
            "x-forwarded-for",
            [("X-Forwarded-For", "10.9.9.9"), ("X-Forwarded-For", "203.0.113.5")],
            "on",
        ),
        (
            "x-forwarded-for",
            [("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-For", "10.9.9.9")],
            "off",
        ),
        ("x-forwarded-for", [("X-Forwarded-For", "10.9.9.9:5555")], "off"),
        ("x-forwarded-for", [("X-Forwarded-For", "[2001:db8::7]:443")], "off"),
        ("x-forwarded-for", [("Forwarded", "for=10.9.9.9")], "on"),
        ("forwarded", [("Forwarded", 'for="10.9.9.9:4711";proto=https')], "off"),
        ("forwarded", [("Forwarded", "for=10.9.9.9"), ("Forwarded", "for=203.0.113.5")], "on"),
        ("forwarded", [("Forwarded", 'for="[2001:db8::7]:443"')], "off"),
        ("forwarded", [("X-Forwarded-For", "10.9.9.9")], "on"),
    ],
)
async def test_f4_only_the_trusted_proxys_hop_picks_the_rule(
    secured_es: SecureES,
    model: FaultModel,
    probe: Probe,
    proxy_header: str,
    headers: list[tuple[str, str]],
    expected: str,
) -> None:
    rollout = {
        "trusted_proxies": ["127.0.0.0/8"],
        "proxy_header": proxy_header,
        "rules": [{"name": "staff", "clients": ["10.0.0.0/8", "2001:db8::/32"], "mode": "off"}],
    }
    async with sidecar(secured_es, model, rollout=rollout) as sc:
        answer = await call(
            sc.url,
            "POST",
            "/docs/_search",
            headers=[("Authorization", ALICE), *headers],
            json_body=QUERY,
        )
        mode = "off" if "rollout_off" in answer.rerank else "on"
        probe.check(f"{proxy_header} {headers}: rule {expected}", mode == expected, answer.rerank)


# --- 5. error bodies quote nothing a client sent in a header -------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic s3cr\x01et-hunter2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"hunter2" * 3000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Auth hunter2: v\r\n\r\n",
        b"G\x01T /hunter2 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /hunter2 HTTP/9.9\r\nHost: x\r\n\r\n",
    ],
)
async def test_f5_parser_errors_are_es_shaped_and_quote_nothing(
    secured_es: SecureES, model: FaultModel, probe: Probe, request_bytes: bytes
) -> None:
    async with sidecar(secured_es, model, wait_model=False) as sc:
        answer = await raw(sc.url, request_bytes)
    _, _, body = answer.partition(b"\r\n\r\n")
    probe.check("refused with 400", status_of(answer) == 400, answer[:80])
    probe.check(
        "no client bytes in the answer",
        b"hunter2" not in answer and b"s3cr" not in answer,
        answer[:300],
    )
    try:
        parsed = json.loads(body)
        shaped = isinstance(parsed["error"]["root_cause"], list) and parsed["status"] == 400
    except (ValueError, KeyError, TypeError):
        shaped = False
    probe.check("ES-shaped JSON", shaped, body[:200])


# --- 6. parser odds ---------------------------------------------------------------------------


async def test_f6_http09_is_refused(secured_es: SecureES, model: FaultModel, probe: Probe) -> None:
    async with sidecar(secured_es, model, wait_model=False) as sc:
        answer = await raw(sc.url, b"GET /_sidecar/health\r\n\r\n")
        probe.check(
            "HTTP/0.9 gets no 200",
            status_of(answer) not in (0, 200) and b'"ok"' not in answer,
            answer[:100],
        )
        answer = await raw(sc.url, b"GET /docs/_count\r\n\r\n")
        probe.check(
            "HTTP/0.9 reaches no ES", not secured_es.seen, [s.raw_path for s in secured_es.seen]
        )


async def test_f6_newline_in_a_document_id_passes_through(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    async with sidecar(secured_es, model, wait_model=False) as sc:
        for path in ("/docs/_doc/a%0Ab", "/docs/_doc/a%0D%0Ab?routing=x%0A", "/docs/_doc/%0A"):
            secured_es.clear()
            answer = await call(sc.url, "GET", path)
            probe.check(f"{path} reaches ES", answer.status == 200, answer.status)
            probe.check(
                f"{path} byte for byte",
                [s.raw_path for s in secured_es.seen] == [path],
                [s.raw_path for s in secured_es.seen],
            )


@pytest.mark.parametrize(
    "coding", ["gzip, chunked", "deflate,chunked", "chunked, chunked", "identity, chunked"]
)
async def test_f6_transfer_codings_other_than_chunked_are_refused(
    secured_es: SecureES, model: FaultModel, probe: Probe, coding: str
) -> None:
    body = gzip.compress(b'{"a": 1}')
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    request = (
        f"POST /docs/_doc/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: {coding}\r\n\r\n"
    ).encode() + chunked
    async with sidecar(secured_es, model, wait_model=False) as sc:
        answer = await raw(sc.url, request)
    status = status_of(answer)
    probe.check(f"{coding}: refused", status in (400, 501), answer[:100])
    probe.check(
        f"{coding}: nothing relabelled reached ES",
        not secured_es.seen,
        [s.raw_path for s in secured_es.seen],
    )


# --- 7. the rerank API: JSON only, cross-origin only by CORS setting -----------------------


async def test_f7_rerank_api_takes_json_only(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    body = json.dumps({"query": "q", "documents": ["a"]}).encode()
    async with sidecar(secured_es, model) as sc:
        for content_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            None,
        ):
            headers = {"Content-Type": content_type} if content_type else {}
            answer = await call(sc.url, "POST", "/_sidecar/v1/rerank", headers=headers, data=body)
            probe.check(f"{content_type}: 415", answer.status == 415, answer.status)
            probe.check(f"{content_type}: not scored", b"relevance_score" not in answer.body)
        answer = await call(
            sc.url,
            "POST",
            "/_sidecar/v1/rerank",
            headers={"Content-Type": "application/json; charset=utf-8"},
            data=body,
        )
        probe.check("application/json: 200", answer.status == 200, answer.status)


async def test_f7_cross_origin_use_is_an_explicit_cors_setting(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    doc = {"query": "q", "documents": ["a"]}
    async with sidecar(secured_es, model) as sc:
        host = sc.url.removeprefix("http://")
        evil = await call(
            sc.url,
            "POST",
            "/_sidecar/v1/rerank",
            headers={"Origin": "https://evil.example"},
            json_body=doc,
        )
        probe.check("another origin: 403", evil.status == 403, evil.status)
        rebound = await call(
            sc.url,
            "POST",
            "/_sidecar/v1/rerank",
            headers={"Origin": "http://rebind.example:1", "Host": "rebind.example:1"},
            json_body=doc,
        )
        probe.check("a DNS-rebinding origin: 403", rebound.status == 403, rebound.status)
        same = await call(
            sc.url,
            "POST",
            "/_sidecar/v1/rerank",
            headers={"Origin": f"http://{host}"},
            json_body=doc,
        )
        probe.check("same origin (an IP): 200", same.status == 200, same.status)
        probe.check("no CORS grant needed", "Access-Control-Allow-Origin" not in same.headers)
    allowed = "https://console.example"
    async with sidecar(secured_es, model, api={"cors_origins": [allowed]}) as sc:
        pre = await call(
            sc.url,
            "OPTIONS",
            "/_sidecar/v1/rerank",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        probe.check(
            "preflight granted",
            pre.status == 204 and pre.headers.get("Access-Control-Allow-Origin") == allowed,
            pre.headers,
        )
        ok = await call(
            sc.url, "POST", "/_sidecar/v1/rerank", headers={"Origin": allowed}, json_body=doc
        )
        probe.check(
            "listed origin: 200 with the grant",
            ok.status == 200 and ok.headers.get("Access-Control-Allow-Origin") == allowed,
        )
        evil = await call(
            sc.url, "OPTIONS", "/_sidecar/v1/rerank", headers={"Origin": "https://evil.example"}
        )
        probe.check(
            "unlisted origin: no grant",
            evil.status == 403 and "Access-Control-Allow-Origin" not in evil.headers,
        )


# --- 9. the score cache as an oracle -----------------------------------------------------------


@pytest.mark.parametrize("scope", ["shared", "identity"])
async def test_f9_identity_scope_tells_nobody_what_others_searched(
    secured_es: SecureES, model: FaultModel, probe: Probe, scope: str
) -> None:
    public = {"query": {"match": {"body": "opening hours desk"}}, "size": 1}
    # Two users behind one service account who see the same (public) documents.
    carol = {"Authorization": SERVICE, "x-proxy-user": "carol", "x-proxy-roles": "everyone"}
    dave = {"Authorization": SERVICE, "x-proxy-user": "dave", "x-proxy-roles": "everyone"}
    async with sidecar(secured_es, model, rerank={"cache": {"scope": scope}}) as sc:
        first = await call(sc.url, "POST", "/docs/_search", headers=carol, json_body=public)
        probe.check("carol's search is scored", first.rerank == "applied", first.rerank)
        other = await call(sc.url, "POST", "/docs/_search", headers=dave, json_body=public)
        own = await call(sc.url, "POST", "/docs/_search", headers=carol, json_body=public)
        probe.check("carol's repeat is a hit", own.rerank == "cached", own.rerank)
        if scope == "shared":
            # The documented trade-off of the default: a hit says someone searched this.
            probe.check("shared: dave hits carol's scores", other.rerank == "cached", other.rerank)
        else:
            probe.check(
                "identity: dave does not see carol's search",
                other.rerank == "applied",
                other.rerank,
            )


# --- bounds that are security properties ---------------------------------------------------


def test_bounds_score_cache_memory_is_bounded_in_bytes(probe: Probe) -> None:
    max_bytes = 4 * 1024 * 1024
    cache = ScoreCache(max_entries=10**9, ttl_s=3600, max_bytes=max_bytes)
    huge = "i" * (4 * 1024 * 1024)
    probe.check(
        "a 4 MiB instruction costs a key 16 bytes",
        len(ScoreCache.key("m", huge, "q", "i", "d", "t")) == 16,
    )
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            # Each request parses its own strings: a 4 KiB instruction per entry.
            instruction = f"{i} " + "i" * 4096
            cache.put_many(
                [ScoreCache.key("m", instruction, f"q{i}", "idx", str(i), "text")], [0.5]
            )
            del instruction
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    probe.check("entries stop at the byte bound", len(cache) <= max_bytes // 300, len(cache))
    probe.check("memory stays within max_bytes", grown <= max_bytes, grown)


def test_bounds_response_cache_is_bounded_in_bytes(probe: Probe) -> None:
    cache = ResponseCache(
        max_entries=1000, ttl_s=60, enabled=True, max_bytes=1 << 20, max_entry_bytes=256 << 10
    )
    for i in range(200):
        cache.put(
            f"k{i}", CachedResponse(200, (("Content-Type", "application/json"),), b"x" * (50 << 10))
        )
    probe.check("held bytes within max_bytes", cache.bytes <= 1 << 20, cache.bytes)
    cache.put("big", CachedResponse(200, (), b"x" * (300 << 10)))
    probe.check("an entry over max_entry_bytes is not stored", cache.get("big") is None)


async def test_bounds_long_rerank_query_instruction_and_query_text(
    secured_es: SecureES, model: FaultModel, probe: Probe
) -> None:
    tuning = {
        "limits": {"max_query_chars": 2048, "max_instruction_chars": 1024},
        "http": {"max_body_bytes": 16 << 20},
    }
    long = "renew " * 600_000  # 3.6 MB
    async with sidecar(secured_es, model, tuning=tuning) as sc:
        headers = {"Authorization": ALICE}
        for key in ("query", "instruction"):
            answer = await call(
                sc.url,
                "POST",
                "/docs/_search",
                headers=headers,
                json_body={**QUERY, "rerank": {key: long}},
            )
            probe.check(f"rerank.{key} past its cap: 400", answer.status == 400, answer.status)
            probe.check(
                f"rerank.{key}: the error names the setting",
                f"max_{key}_chars".encode() in answer.body,
            )
            probe.check(
                f"rerank.{key}: the error quotes no text", b"renew renew" not in answer.body
            )
        model.last_query = ""
        answer = await call(
            sc.url,
            "POST",
            "/docs/_search",
            headers=headers,
            json_body={"query": {"match": {"body": long}}},
        )
        probe.check("long query text: the search is served", answer.status == 200, answer.status)
        probe.check(
            "long query text: the model got it cut",
            0 < len(model.last_query) <= 2048,
            len(model.last_query),
        )
        for key in ("query", "instruction"):
            body = {"query": "q", "documents": ["a"], key: long}
            answer = await call(sc.url, "POST", "/_sidecar/v1/rerank", json_body=body)
            probe.check(f"API {key} past its cap: 400", answer.status == 400, answer.status)


# --- a fixture for the process test: the secured ES on a thread of its own ------------------


@pytest.fixture
def secured_es_sync() -> Iterator[tuple[str, FaultModel]]:
    """The secured ES and the fault model on an event loop in another thread, for a test
    that runs the sidecar as a child process (its start-up must not block them)."""
    import threading

    from tests.support.secure_es import secure_es

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    es_cm = secure_es()
    model = FaultModel()

    async def start() -> str:
        es = await es_cm.__aenter__()
        await model.start()
        return es.url

    url = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield url, model
    finally:

        async def stop() -> None:
            await model.close()
            await es_cm.__aexit__(None, None, None)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
