"""Interception points for ``_search`` and ``_msearch``.

These are the only ES endpoints whose bodies the sidecar reads. The rerank path plugs in
here; requests it does not rerank are forwarded as they came.
"""

from __future__ import annotations

from aiohttp import web

from sidecar.keys import UPSTREAM
from sidecar.proxy import buffered_to_response
from sidecar.upstream import end_to_end_headers, upstream_url


async def read_body(request: web.Request) -> bytes | None:
    """The whole request body, bounded by ``server.max_body_bytes`` (413 past it)."""
    if not request.body_exists:
        return None
    return await request.read()


async def search_handler(request: web.Request) -> web.StreamResponse:
    upstream = request.app[UPSTREAM]
    body = await read_body(request)
    resp = await upstream.fetch(
        request.method,
        upstream_url(upstream.base, request),
        end_to_end_headers(request.headers),
        body,
    )
    return buffered_to_response(resp)


msearch_handler = search_handler
