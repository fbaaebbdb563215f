"""The route table: the architecture in one screen.

``/_sidecar/*`` belongs to the sidecar (ES never uses a leading ``_sidecar`` path segment);
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

from sidecar.handlers import admin, msearch, ops, passthrough, rerank_api, search, ui
from sidecar.keys import CONFIG

SEARCH_METHODS = ("GET", "POST")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sidecar/health", ops.health)
    r.add_get("/_sidecar/ready", ops.ready)
    r.add_get("/_sidecar/metrics", ops.metrics)
    r.add_get("/_sidecar/openapi.yaml", ops.openapi)
    app.add_subapp("/_sidecar/admin", admin.admin_app(app[CONFIG].admin))
    ui.add_routes(app)
    rerank_api.add_routes(app)
    for method in SEARCH_METHODS:
        r.add_route(method, "/_search", search.search_handler)
        r.add_route(method, "/{index}/_search", search.search_handler)
        r.add_route(method, "/_msearch", msearch.handle_msearch)
        r.add_route(method, "/{index}/_msearch", msearch.handle_msearch)
    r.add_route("*", "/{tail:.*}", passthrough.proxy_handler)
