"""UBI's endpoints: ``POST /_sidecar/ubi/events`` (events from browsers and frontends) and
``GET /_sidecar/ubi/report`` (does reranking help; the admin API's access rules).

Events are called from users' browsers: their own ``ubi.events.allow_from`` (anyone by
default), optional token, CORS origins (``ubi.events.cors_origins``), a size bound (413) and
a per-client rate (429). A request is one event, a JSON array of them, or ndjson; it is
validated whole (400 naming the first bad field and the event's index; nothing stored) and
answered 202 with the count.
"""

from __future__ import annotations

import os

from aiohttp import web

from sidecar.admission.ledger import client_key
from sidecar.config import SidecarConfig
from sidecar.handlers.admin import TOKEN_ENV
from sidecar.http.access import Cors, Guard
from sidecar.http.body import read_body
from sidecar.jsonutil import json_response
from sidecar.keys import CONFIG, ROLLOUT, UBI

EVENTS, REPORT = "/_sidecar/ubi/events", "/_sidecar/ubi/report"


async def events(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    limits = config.tuning.http.model_copy(
        update={"max_body_bytes": config.ubi.events.max_body_bytes}
    )
    raw = await read_body(request, limits) or b""
    who = request.app[ROLLOUT].client(request.remote, request.headers)
    accepted = request.app[UBI].accept(client_key(who.addr), raw, request.content_type)
    return json_response({"accepted": accepted}, status=202)


async def report(request: web.Request) -> web.Response:
    query = request.rel_url.query
    figures = await request.app[UBI].report(query.get("since"), query.get("until"))
    return json_response(figures)


def add_routes(app: web.Application, config: SidecarConfig) -> None:
    if not config.ubi.enabled:
        return
    surface = config.ubi.events
    guard = Guard("UBI events", surface.allow_from, surface.token)
    cors = Cors(surface.cors_origins)
    app.router.add_post(EVENTS, guard.wrap(cors.wrap(events)))
    app.router.add_route("OPTIONS", EVENTS, guard.wrap(cors.preflight, authenticate=False))
    admin = Guard(
        "UBI report",
        config.admin.allow_from,
        config.admin.token or os.environ.get(TOKEN_ENV),
        required=True,
        token_name="admin",
    )
    app.router.add_get(REPORT, admin.wrap(report))
