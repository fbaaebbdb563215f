"""The route table: the architecture in one screen.

``/_sidecar/*`` belongs to the sidecar (ES never uses a leading ``_sidecar`` path segment),
all of it: a path there that no route serves is the sidecar's 404, never ES's. Each of its
surfaces has its own ``allow_from`` and optional token (:mod:`sidecar.http.access`): the
rerank API (``/_sidecar/v1/rerank``; the Cohere-compatible ``/v1/rerank`` only when
``api.cohere_root_path`` is on) and the debug UI are loopback-only unless configured.
``_search`` and ``_msearch`` are intercepted; everything else is passed through.

One search walks three layers, each module once::

    handlers/search.py    read the body, rollout decides the mode
      -> rerank/step.py   plan: rerank it, or why not (the body ES is to receive)
      -> upstream/        the ES client builds the wire request and fetches the answer
      -> rerank/step.py   score the window (engine: cache, breaker, model), rewrite
      -> handlers/search.py  write ES's status and headers with the rewritten body

A search that is not reranked goes handlers -> upstream (streamed) and back.
"""

from __future__ import annotations

from aiohttp import web

from sidecar.handlers import admin, ops, passthrough, rerank_api, search, ubi, ui
from sidecar.http.access import Guard
from sidecar.keys import CONFIG

SEARCH_METHODS = ("GET", "POST")
#: Any path, newlines included: ES serves ids with %0A in them, and so must the pass-through.
ANY = r"[\s\S]*"


def setup_routes(app: web.Application) -> None:
    config = app[CONFIG]
    r = app.router
    r.add_get("/_sidecar/health", ops.health)
    r.add_get("/_sidecar/ready", ops.ready)
    metrics = Guard("metrics endpoint", config.metrics.allow_from, config.metrics.token)
    r.add_get("/_sidecar/metrics", metrics.wrap(ops.metrics))
    r.add_get("/_sidecar/openapi.yaml", ops.openapi)
    app.add_subapp("/_sidecar/admin", admin.admin_app(config.admin))
    ui.add_routes(app, config.ui)
    rerank_api.add_routes(app, config.api)
    ubi.add_routes(app, config)
    # The rest of /_sidecar (and /_sidecar%2F..., /_sidecarX: no index name starts with an
    # underscore) is the sidecar's too: never passed on to ES.
    r.add_route("*", "/_sidecar{tail:" + ANY + "}", ops.not_found)
    for method in SEARCH_METHODS:
        r.add_route(method, "/_search", search.search_handler)
        r.add_route(method, "/{index}/_search", search.search_handler)
        r.add_route(method, "/_msearch", search.msearch_handler)
        r.add_route(method, "/{index}/_msearch", search.msearch_handler)
    r.add_route("*", "/{tail:" + ANY + "}", passthrough.proxy_handler)
