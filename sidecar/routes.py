"""The route table: the architecture in one screen.

``/_sidecar/*`` belongs to the sidecar (ES never uses a leading ``_sidecar`` path segment);
``_search`` and ``_msearch`` are intercepted; everything else is passed through.
"""

from __future__ import annotations

from aiohttp import web

from sidecar.handlers import admin, msearch, ops, passthrough, rerank_api, search, ui

SEARCH_METHODS = ("GET", "POST")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sidecar/health", ops.health)
    r.add_get("/_sidecar/ready", ops.ready)
    r.add_get("/_sidecar/metrics", ops.metrics)
    r.add_get("/_sidecar/openapi.yaml", ops.openapi)
    admin.add_routes(app)
    ui.add_routes(app)
    rerank_api.add_routes(app)
    for method in SEARCH_METHODS:
        r.add_route(method, "/_search", search.search_handler)
        r.add_route(method, "/{index}/_search", search.search_handler)
        r.add_route(method, "/_msearch", msearch.handle_msearch)
        r.add_route(method, "/{index}/_msearch", msearch.handle_msearch)
    r.add_route("*", "/{tail:.*}", passthrough.proxy_handler)
