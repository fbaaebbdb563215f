"""The transparent pass-through: every request the sidecar does not intercept.

Bodies stream in both directions (a multi-GB ``_bulk`` is never held in memory), status,
reason and end-to-end headers are copied, ``HEAD`` keeps ES's ``Content-Length``, and
compressed bodies stay compressed.
"""

from __future__ import annotations

import logging
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from sidecar.keys import UPSTREAM
from sidecar.trace import trace_of
from sidecar.upstream import BufferedResponse, end_to_end_headers, upstream_url

log = logging.getLogger("sidecar.proxy")

_CHUNK = 64 * 1024


def request_body(request: web.Request) -> aiohttp.StreamReader | None:
    return request.content if request.body_exists else None


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    upstream = request.app[UPSTREAM]
    headers = end_to_end_headers(request.headers)
    url = upstream_url(upstream.base, request)
    t0 = time.perf_counter()
    async with upstream.request(request.method, url, headers, request_body(request)) as resp:
        trace_of(request).es_s = time.perf_counter() - t0
        out = web.StreamResponse(status=resp.status, reason=resp.reason)
        out.headers.extend(end_to_end_headers(resp.headers))
        if request.method == "HEAD" or resp.status in (204, 304):
            await out.prepare(request)
            await out.write_eof()
            return out
        if "Content-Length" not in resp.headers:
            out.enable_chunked_encoding()
        await out.prepare(request)
        try:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                await out.write(chunk)
        except (TimeoutError, aiohttp.ClientError):
            # The status line is already sent, so no error body can follow. Cutting the
            # connection is the only honest signal: the client sees a truncated response
            # instead of one that looks complete.
            log.warning("Elasticsearch broke off mid-response on %s; closing", url.path)
            if request.transport is not None:
                request.transport.close()
            return out
        await out.write_eof()
        return out


def buffered_to_response(resp: BufferedResponse, *, body: bytes | None = None) -> web.Response:
    """Turn a buffered ES answer back into a client response (optionally with a new body)."""
    headers: CIMultiDict[str] = end_to_end_headers(resp.headers)
    headers.popall("Content-Length", None)
    if body is not None:
        # A rewritten body is plain JSON; the original encoding no longer applies.
        headers.popall("Content-Encoding", None)
    return web.Response(
        status=resp.status,
        reason=resp.reason,
        headers=headers,
        body=resp.body if body is None else body,
    )
