"""The admin API under ``/_sidecar/admin/``: rollout rules, breaker, caches, config.

Reachable only from ``admin.allow_from`` networks (loopback by default; anyone else gets a
plain 404, as if the path did not exist) and only with ``Authorization: Bearer <token>``:
401 without a token, 403 with a wrong one (compared in constant time).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Any

from aiohttp import web

from sidecar.config import redacted
from sidecar.errors import ConfigError, Forbidden, IllegalArgument, NotFound, Unauthorized
from sidecar.jsonutil import json_response
from sidecar.keys import CONFIG, ENGINE, ROLLOUT
from sidecar.rerank.rollout import parse_address

TOKEN_ENV = "RERANK_SIDECAR_ADMIN_TOKEN"
PREFIX = "/_sidecar/admin"


def _authorize(request: web.Request) -> None:
    admin = request.app[CONFIG].admin
    peer = parse_address(request.remote)
    nets = [ipaddress.ip_network(n, strict=False) for n in admin.allow_from]
    if peer is None or not any(peer.version == n.version and peer in n for n in nets):
        raise NotFound(f"no handler found for uri [{request.path}]")
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise Unauthorized("the admin API needs Authorization: Bearer <token>")
    expected = admin.token or os.environ.get(TOKEN_ENV) or ""
    if not expected or not hmac.compare_digest(header[7:].strip().encode(), expected.encode()):
        raise Forbidden("wrong admin token")


def _rules(request: web.Request) -> dict[str, Any]:
    rollout = request.app[ROLLOUT]
    rules = rollout.rules
    return {
        "source": rules.source,
        "default": rules.default,
        "rules": [c.rule.model_dump(mode="json") for c in rules.rules],
        "last_error": rollout.last_error,
    }


async def get_rollout(request: web.Request) -> web.Response:
    _authorize(request)
    return json_response(_rules(request))


async def reload_rollout(request: web.Request) -> web.Response:
    _authorize(request)
    try:
        request.app[ROLLOUT].reload()
    except ConfigError as exc:
        raise IllegalArgument(f"rules not reloaded, the previous rules stay: {exc}") from exc
    return json_response({"reloaded": True, **_rules(request)})


def _breaker(request: web.Request) -> dict[str, Any]:
    breaker = request.app[ENGINE].breaker
    return {
        "state": breaker.state,
        "fail_counter": breaker.fail_counter,
        "reset_timeout_s": breaker.reset_timeout_s,
    }


async def get_breaker(request: web.Request) -> web.Response:
    _authorize(request)
    return json_response(_breaker(request))


async def open_breaker(request: web.Request) -> web.Response:
    _authorize(request)
    request.app[ENGINE].breaker.force_open()
    return json_response(_breaker(request))


async def reset_breaker(request: web.Request) -> web.Response:
    _authorize(request)
    request.app[ENGINE].breaker.reset()
    return json_response(_breaker(request))


def _caches(request: web.Request) -> dict[str, Any]:
    engine = request.app[ENGINE]
    return {
        "scores": {
            "entries": len(engine.scores),
            "max_entries": engine.scores.maxsize,
            "hits": engine.scores.stats.hits,
            "misses": engine.scores.stats.misses,
            "enabled": engine.scores.enabled,
        },
        "responses": {
            "entries": len(engine.responses),
            "hits": engine.responses.stats.hits,
            "misses": engine.responses.stats.misses,
            "enabled": engine.responses.enabled,
        },
    }


async def get_cache(request: web.Request) -> web.Response:
    _authorize(request)
    return json_response(_caches(request))


async def clear_cache(request: web.Request) -> web.Response:
    _authorize(request)
    engine = request.app[ENGINE]
    engine.scores.clear()
    engine.responses.clear()
    return json_response(_caches(request))


async def get_config(request: web.Request) -> web.Response:
    _authorize(request)
    return json_response(redacted(request.app[CONFIG]))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/rollout", get_rollout)
    r.add_post(f"{PREFIX}/rollout/reload", reload_rollout)
    r.add_get(f"{PREFIX}/breaker", get_breaker)
    r.add_post(f"{PREFIX}/breaker/open", open_breaker)
    r.add_post(f"{PREFIX}/breaker/reset", reset_breaker)
    r.add_get(f"{PREFIX}/cache", get_cache)
    r.add_post(f"{PREFIX}/cache/clear", clear_cache)
    r.add_get(f"{PREFIX}/config", get_config)
