"""The transparent pass-through: every request the sidecar does not intercept.

Bodies stream in both directions (a multi-GB ``_bulk`` is never held in memory); what ES
receives and what the client gets back is the ES client's business (:mod:`sidecar.upstream`).
"""

from __future__ import annotations

from aiohttp import web

from sidecar.admission.ledger import client_key
from sidecar.errors import RequestTimeout, UpstreamError
from sidecar.http.body import BodyPace, paced_body
from sidecar.http.pace import Pace
from sidecar.keys import CONFIG, ES, ROLLOUT
from sidecar.upstream import EsRequest


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    server = request.app[CONFIG].tuning.http
    idle_s = server.client_read_timeout_s
    pace = BodyPace()
    rate = Pace(server.min_transfer_bytes_per_s, server.transfer_grace_s)
    body = paced_body(request.content, idle_s, pace, rate) if request.body_exists else None
    who = request.app[ROLLOUT].client(request.remote, request.headers)
    req = EsRequest.passthrough(request, body)
    try:
        return await request.app[ES].relay(request, req, client=client_key(who.addr))
    except UpstreamError as exc:
        if pace.stalled:
            # The client stalled, not ES: say so (408), as for intercepted bodies.
            raise RequestTimeout(
                "request body not received: it stalled, or came slower than "
                f"{server.min_transfer_bytes_per_s} bytes/s"
            ) from exc
        raise
