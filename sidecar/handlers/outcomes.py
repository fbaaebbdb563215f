"""How a search handler answers: ES's answer streamed or rewritten, with the outcome in
``X-Rerank`` and on the request's trace (logs and metrics read it there)."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from sidecar.http.trace import trace_of
from sidecar.keys import ES
from sidecar.rerank.outcome import Outcome
from sidecar.upstream import EsRequest

RERANK_HEADER = "X-Rerank"


def fair_key(address: object) -> str:
    """Who waits its turn for the model: the client address behind trusted proxies, an
    IPv6 one by its /64 (one host or site has a whole /64 to pick fresh addresses from).
    Not a credential: one a client writes itself (any Authorization, with ES security
    off) would give it a fresh, unused place in the queue per request."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return f"ip:{ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"ip:{address}"


async def forward(request: web.Request, req: EsRequest, outcome: Outcome) -> web.StreamResponse:
    """A search that is not reranked: ES's answer is streamed back unchanged (never
    buffered, so a huge aggregation or a large page costs the sidecar no memory)."""
    # Streamed like any pass-through: the search pool is kept for the answers the rerank
    # path reads, which a slow reader of a streamed answer must not be able to hold.
    resp = await request.app[ES].relay(request, req, on_headers={RERANK_HEADER: outcome.header})
    trace_of(request).outcome = outcome
    return resp


def answer(request: web.Request, resp: web.Response, outcome: Outcome) -> web.Response:
    resp.headers[RERANK_HEADER] = outcome.header
    trace_of(request).outcome = outcome
    return resp
