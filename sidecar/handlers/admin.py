"""The admin API under ``/_sidecar/admin/``: rollout rules, breaker, caches, config.

A sub-application (:func:`admin_app`) whose one middleware guards every route: only peers
in ``admin.allow_from`` reach it at all (anyone else gets a plain 404, as if the path did
not exist), and only with ``Authorization: Bearer <token>``: 401 without a token, 403 with a
wrong one (compared in constant time); without a configured token every call is refused.
The checks are :class:`sidecar.http.access.Guard`'s, the same for every surface;
``allow_from`` and the token are resolved once, when the sub-application is built. The
handlers read the parent's resources through ``request.config_dict``; the parent's
middlewares render errors in the ES shape.
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sidecar.config import AdminConfig, redacted
from sidecar.errors import ConfigError, IllegalArgument, NotFound
from sidecar.http.access import Guard
from sidecar.jsonutil import json_response
from sidecar.keys import ADMISSION, CONFIG, ENGINE, ROLLOUT, SEARCH

TOKEN_ENV = "RERANK_SIDECAR_ADMIN_TOKEN"


def _guard(config: AdminConfig) -> Middleware:
    access = Guard(
        "admin API",
        config.allow_from,
        config.token or os.environ.get(TOKEN_ENV),
        required=True,
        token_name="admin",
    )

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        access.check(request)
        unmatched = request.match_info.http_exception
        if unmatched is not None and unmatched.status == 404:
            raise NotFound(f"no handler found for uri [{request.path}]")
        return await handler(request)

    return guard


def _rules(request: web.Request) -> dict[str, Any]:
    rollout = request.config_dict[ROLLOUT]
    rules = rollout.rules
    return {
        "source": rules.source,
        "default": rules.default,
        "rules": [c.rule.model_dump(mode="json") for c in rules.rules],
        "last_error": rollout.last_error,
        # Why the UBI guard turned reranking off, until the next reload (null: it has not).
        "guard_tripped": rollout.tripped,
    }


async def get_rollout(request: web.Request) -> web.Response:
    return json_response(_rules(request))


async def reload_rollout(request: web.Request) -> web.Response:
    try:
        request.config_dict[ROLLOUT].reload()
    except ConfigError as exc:
        raise IllegalArgument(f"rules not reloaded, the previous rules stay: {exc}") from exc
    return json_response({"reloaded": True, **_rules(request)})


def _breaker(request: web.Request) -> dict[str, Any]:
    breaker = request.config_dict[ADMISSION].breaker
    return {
        "state": breaker.state,
        "fail_counter": breaker.fail_counter,
        "reset_timeout_s": breaker.reset_timeout_s,
    }


async def get_breaker(request: web.Request) -> web.Response:
    return json_response(_breaker(request))


async def open_breaker(request: web.Request) -> web.Response:
    request.config_dict[ADMISSION].breaker.force_open()
    return json_response(_breaker(request))


async def reset_breaker(request: web.Request) -> web.Response:
    request.config_dict[ADMISSION].breaker.reset()
    return json_response(_breaker(request))


def _caches(request: web.Request) -> dict[str, Any]:
    engine = request.config_dict[ENGINE]
    pages = request.config_dict[SEARCH].step.pages
    return {
        "scores": {
            "entries": len(engine.scores),
            "max_entries": engine.scores.maxsize,
            "hits": engine.scores.stats.hits,
            "shared_hits": engine.scores.stats.shared_hits,
            "misses": engine.scores.stats.misses,
            "enabled": engine.scores.enabled,
        },
        "responses": {
            "entries": len(engine.responses),
            "hits": engine.responses.stats.hits,
            "shared_hits": engine.responses.stats.shared_hits,
            "misses": engine.responses.stats.misses,
            "enabled": engine.responses.enabled,
        },
        "page_orders": {
            "entries": len(pages),
            "kept": pages.stats.kept,
            "continued": pages.stats.continued,
        },
        "shared": engine.shared.state() if engine.shared is not None else {"backend": "memory"},
    }


async def get_cache(request: web.Request) -> web.Response:
    return json_response(_caches(request))


async def clear_cache(request: web.Request) -> web.Response:
    """This replica's caches and orders; with ``shared.url`` also every key under the
    prefix in Redis (every replica's shared state): ``shared_cleared`` says how many, or
    null when Redis could not be asked."""
    engine = request.config_dict[ENGINE]
    engine.scores.clear()
    engine.responses.clear()
    request.config_dict[SEARCH].step.pages.clear()
    body = _caches(request)
    if engine.shared is not None:
        body["shared_cleared"] = await engine.shared.clear()
    return json_response(body)


async def get_config(request: web.Request) -> web.Response:
    return json_response(redacted(request.config_dict[CONFIG]))


def admin_app(config: AdminConfig) -> web.Application:
    """The admin sub-application; mount it with ``app.add_subapp("/_sidecar/admin", ...)``."""
    app = web.Application(middlewares=[_guard(config)])
    r = app.router
    r.add_get("/rollout", get_rollout)
    r.add_post("/rollout/reload", reload_rollout)
    r.add_get("/breaker", get_breaker)
    r.add_post("/breaker/open", open_breaker)
    r.add_post("/breaker/reset", reset_breaker)
    r.add_get("/cache", get_cache)
    r.add_post("/cache/clear", clear_cache)
    r.add_get("/config", get_config)
    return app
