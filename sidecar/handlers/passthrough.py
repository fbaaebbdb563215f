"""The transparent pass-through: every request the sidecar does not intercept.

Bodies stream in both directions (a multi-GB ``_bulk`` is never held in memory), status,
reason and end-to-end headers are copied, ``HEAD`` keeps ES's ``Content-Length``, and
compressed bodies stay compressed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sidecar.errors import RequestTimeout, UpstreamError
from sidecar.http.trace import trace_of
from sidecar.keys import CONFIG, UPSTREAM
from sidecar.upstream import BufferedResponse, end_to_end_headers, upstream_url

log = logging.getLogger("sidecar.handlers.passthrough")

_CHUNK = 64 * 1024


class _BodyPace:
    """Whether the client's streamed body stalled (set by :func:`paced_body`)."""

    def __init__(self) -> None:
        self.stalled = False


async def paced_body(
    content: aiohttp.StreamReader, idle_s: float, pace: _BodyPace
) -> AsyncIterator[bytes]:
    """The client's body as it arrives, for streaming to ES. A pause longer than ``idle_s``
    ends it (slowloris): a large ``_bulk`` may take long in all, but must keep moving."""
    while True:
        try:
            async with asyncio.timeout(idle_s):
                chunk = await content.readany()
        except TimeoutError as exc:
            pace.stalled = True
            raise RequestTimeout(f"request body stalled for more than {idle_s:g}s") from exc
        if not chunk:
            return
        yield chunk


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    upstream = request.app[UPSTREAM]
    headers = end_to_end_headers(request.headers)
    url = upstream_url(upstream.base, request)
    pace = _BodyPace()
    body = None
    if request.body_exists:
        idle_s = request.app[CONFIG].server.client_read_timeout_s
        body = paced_body(request.content, idle_s, pace)
    try:
        return await relay(request, url, headers, body)
    except UpstreamError as exc:
        if pace.stalled:
            # The client stalled, not ES: say so (408), as for intercepted bodies.
            raise RequestTimeout(
                f"request body not received: it stalled for more than "
                f"{request.app[CONFIG].server.client_read_timeout_s:g}s"
            ) from exc
        raise


async def relay(
    request: web.Request,
    url: URL,
    headers: CIMultiDict[str],
    body: bytes | AsyncIterable[bytes] | None,
    *,
    extra_headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Send the request to ES and stream its answer back unchanged (plus ``extra_headers``):
    the sidecar never holds the response body."""
    upstream = request.app[UPSTREAM]
    t0 = time.perf_counter()
    async with upstream.request(request.method, url, headers, body) as resp:
        trace_of(request).es_s = time.perf_counter() - t0
        out = web.StreamResponse(status=resp.status, reason=resp.reason)
        out.headers.extend(end_to_end_headers(resp.headers))
        if extra_headers:
            out.headers.update(extra_headers)
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
