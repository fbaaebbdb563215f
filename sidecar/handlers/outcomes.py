"""How a search handler answers: ES's answer streamed or rewritten, with the outcome in
``X-Rerank`` and on the request's trace (logs and metrics read it there)."""

from __future__ import annotations

import hashlib

from aiohttp import web

from sidecar.http.trace import trace_of
from sidecar.keys import ES
from sidecar.rerank.outcome import Outcome
from sidecar.upstream import EsRequest

RERANK_HEADER = "X-Rerank"


def fair_key(request: web.Request, address: object) -> str:
    """Who waits its turn for the model: the API key (hashed: it never sits in memory as
    sent) when there is one, else the client address behind trusted proxies."""
    auth = request.headers.get("Authorization")
    if auth:
        return "key:" + hashlib.sha256(auth.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"ip:{address}"


async def forward(request: web.Request, req: EsRequest, outcome: Outcome) -> web.StreamResponse:
    """A search that is not reranked: ES's answer is streamed back unchanged (never
    buffered, so a huge aggregation or a large page costs the sidecar no memory)."""
    # Searches have a pool of their own: pass-through traffic cannot take it.
    resp = await request.app[ES].relay(
        request, req, on_headers={RERANK_HEADER: outcome.header}, pool="search"
    )
    trace_of(request).outcome = outcome
    return resp


def answer(request: web.Request, resp: web.Response, outcome: Outcome) -> web.Response:
    resp.headers[RERANK_HEADER] = outcome.header
    trace_of(request).outcome = outcome
    return resp
