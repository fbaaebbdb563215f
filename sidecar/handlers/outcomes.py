"""How a search handler answers: ES's answer streamed, or the service's response, with the
outcome in ``X-Rerank`` and on the request's trace (logs and metrics read it there)."""

from __future__ import annotations

from aiohttp import web

from sidecar.http.trace import trace_of
from sidecar.keys import ES
from sidecar.search.call import Relay, Result

RERANK_HEADER = "X-Rerank"


async def write(request: web.Request, result: Result, client: str) -> web.StreamResponse:
    """Write ``result``; ES's answer to a :class:`Relay` comes on ``client``'s share of the
    pass-through pool."""
    if isinstance(result, Relay):
        # Streamed like any pass-through (never buffered, so a huge aggregation or a large
        # page costs the sidecar no memory), on the pass-through pool: the search pool is
        # kept for the answers the rerank path reads, which a slow reader of a streamed
        # answer must not be able to hold.
        on_headers = {RERANK_HEADER: result.outcome.header}
        response = await request.app[ES].relay(
            request, result.request, on_headers=on_headers, client=client
        )
    else:
        response = result.response
        response.headers[RERANK_HEADER] = result.outcome.header
    trace_of(request).outcome = result.outcome
    return response
