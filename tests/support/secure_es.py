"""A secured Elasticsearch stand-in that records every request and lets each identity see
only its own documents: the upstream of the security tests.

noida-db has no security, and the fault ES of :mod:`devtools.fakes` answers everyone alike,
so this is a small real aiohttp server on a loopback port that authenticates the way a
secured cluster does and answers ``_search`` with the hits the *effective* user may see:

* ``Authorization``: Basic users, an ES API key (``ApiKey``), Bearer tokens, and a
  ``Negotiate`` scheme nobody configured a cache rule for; a revoked credential gets 401;
* ``es-security-runas-user`` (Elasticsearch run-as): honoured for users with the run-as
  privilege, 403 for anyone else;
* ``x-proxy-user`` / ``x-proxy-roles`` (OpenSearch proxy authentication): honoured from the
  trusted service account, documents visible by role;
* ``Cookie: session=...`` (a security plugin's session cookie).

``GET /_security/_authenticate`` (and OpenSearch's ``/_plugins/_security/authinfo``) answer
200 with the user for valid credentials and 401 otherwise; ``GET /`` is 401 without them.
Every answer echoes ``X-Opaque-Id`` (as ES does), carries a per-request ``X-Trace-Serial``
and ``Set-Cookie`` (so a cache that replays per-request headers is caught), and is gzipped
when the client accepts gzip (ES's ``http.compression``). Any other path answers
``{"acknowledged": true}`` with what it received.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


def basic(user: str, password: str = "pw") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


#: Credentials -> user. ``service`` may run as others and is the trusted proxy-auth account.
CREDENTIALS = {
    basic("alice"): "alice",
    basic("bob"): "bob",
    basic("service"): "service",
    "ApiKey YWxpY2Uta2V5OnNlY3JldA==": "alice",
    "ApiKey Ym9iLWtleTpzZWNyZXQ=": "bob",
    "Bearer alice-token": "alice",
    "Bearer bob-token": "bob",
    "Negotiate YWxpY2U=": "alice",
    "Negotiate Ym9i": "bob",
}
SESSIONS = {"sess-alice": "alice", "sess-bob": "bob"}
RUN_AS = {"service"}

DOCS: dict[str, dict[str, Any]] = {
    "alice-private": {
        "title": "alice salary review",
        "body": "renew the library card for alice: her private salary review notes",
        "users": {"alice"},
        "roles": {"hr"},
    },
    "bob-private": {
        "title": "bob medical leave",
        "body": "renew the library card for bob: his private medical leave request",
        "users": {"bob"},
        "roles": {"ops"},
    },
    "public-1": {
        "title": "library card renewal",
        "body": "renew your library card online or at the front desk with proof of address",
        "users": {"alice", "bob", "service"},
        "roles": {"hr", "ops", "everyone"},
    },
    "public-2": {
        "title": "opening hours",
        "body": "the library opens at nine and you can renew books and cards at the desk",
        "users": {"alice", "bob", "service"},
        "roles": {"hr", "ops", "everyone"},
    },
}


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class SecureES:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def searches(self) -> list[Seen]:
        return [s for s in self.seen if "_search" in s.raw_path]

    def clear(self) -> None:
        self.seen.clear()

    # --- who is asking ------------------------------------------------------------------

    def who(self, request: web.Request) -> tuple[int, str, set[str]]:
        """(status, user, roles): 200 and the effective identity, or the refusal."""
        auth = request.headers.get("Authorization")
        user: str | None = None
        if auth is not None:
            if auth in self.revoked or auth not in CREDENTIALS:
                return 401, "", set()
            user = CREDENTIALS[auth]
        else:
            for part in request.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "session" and value in SESSIONS:
                    user = SESSIONS[value]
        if user is None:
            return 401, "", set()
        roles: set[str] = set()
        run_as = request.headers.get("es-security-runas-user")
        if run_as is not None:
            if user not in RUN_AS:
                return 403, "", set()
            user = run_as
        proxy_user = request.headers.get("x-proxy-user")
        if proxy_user is not None and user == "service":
            user = proxy_user
            roles = {r.strip() for r in request.headers.get("x-proxy-roles", "").split(",")}
        return 200, user, roles

    # --- answers ------------------------------------------------------------------------

    def _respond(self, request: web.Request, status: int, body: Any) -> web.Response:
        data = json.dumps(body).encode()
        headers = {
            "X-Elastic-Product": "Elasticsearch",
            "Content-Type": "application/json",
            "X-Trace-Serial": str(next(self._serial)),
            "Set-Cookie": f"es-node=n{next(self._serial)}; HttpOnly",
        }
        opaque = request.headers.get("X-Opaque-Id")
        if opaque is not None:
            headers["X-Opaque-Id"] = opaque
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        return web.Response(status=status, body=data, headers=headers)

    def _refusal(self, request: web.Request, status: int) -> web.Response:
        reason = "missing authentication credentials" if status == 401 else "action forbidden"
        err = {"type": "security_exception", "reason": reason}
        return self._respond(
            request, status, {"error": {"root_cause": [err], **err}, "status": status}
        )

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, _raw_headers_str(request), body))
        path = request.path
        if path in ("/_security/_authenticate", "/_plugins/_security/authinfo", "/"):
            status, user, roles = self.who(request)
            if status != 200:
                return self._refusal(request, status)
            if path == "/":
                return self._respond(
                    request, 200, {"name": "secure-es", "tagline": "You Know, for Search"}
                )
            return self._respond(request, 200, {"username": user, "roles": sorted(roles)})
        if path.endswith("/_search"):
            status, user, roles = self.who(request)
            if status != 200:
                return self._refusal(request, status)
            try:
                answer = self._search(request, body, user, roles)
            except (ValueError, TypeError, RecursionError, OverflowError):
                # ES refuses what it cannot parse with a 400, never a 500.
                err = {"type": "parse_exception", "reason": "failed to parse search request"}
                body_ = {"error": {"root_cause": [err], **err}, "status": 400}
                return self._respond(request, 400, body_)
            return self._respond(request, 200, answer)
        return self._respond(
            request, 200, {"acknowledged": True, "path": request.raw_path, "bytes": len(body)}
        )

    def _search(self, request: web.Request, body: bytes, user: str, roles: set[str]) -> Any:
        query = json.loads(body) if body.strip() else {}
        size = int(query.get("size", 10)) if isinstance(query, dict) else 10
        visible = [
            i for i, d in DOCS.items() if (roles & d["roles"] if roles else user in d["users"])
        ]
        hits = [
            {
                "_index": "docs",
                "_id": doc_id,
                "_score": 1.0 - n / 10,
                "_source": {"title": DOCS[doc_id]["title"], "body": DOCS[doc_id]["body"]},
            }
            for n, doc_id in enumerate(visible[:size])
        ]
        return {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {
                "total": {"value": len(visible), "relation": "eq"},
                "max_score": hits[0]["_score"] if hits else None,
                "hits": hits,
            },
        }


def _raw_headers_str(request: web.BaseRequest) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]


@asynccontextmanager
async def secure_es() -> AsyncIterator[SecureES]:
    es = SecureES()
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def handler(request: web.Request) -> web.Response:
        return await es.handle(request)

    app.router.add_route("*", r"/{tail:[\s\S]*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    es.url = str(server.make_url("")).rstrip("/")
    try:
        yield es
    finally:
        await server.close()
