"""Reading the bodies the sidecar must hold (``_search``, ``_msearch``, ``/v1/rerank``)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from sidecar.errors import RequestTimeout, RequestTooLarge
from sidecar.keys import CONFIG

_CHUNK = 64 * 1024


async def read_body(request: web.Request) -> bytes | None:
    """The whole request body (None when there is none), bounded by
    ``server.max_body_bytes`` (413 past it, without reading the rest) and by
    ``server.client_read_timeout_s`` (a slow client cannot hold a handler forever)."""
    if not request.body_exists:
        return None
    server = request.app[CONFIG].server
    limit = server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLarge(f"request body is larger than {limit} bytes")
    data = bytearray()
    try:
        async with asyncio.timeout(server.client_read_timeout_s):
            async for chunk in request.content.iter_chunked(_CHUNK):
                data += chunk
                if len(data) > limit:
                    raise RequestTooLarge(f"request body is larger than {limit} bytes")
    except TimeoutError as exc:
        raise RequestTimeout(
            f"request body not received within {server.client_read_timeout_s:g}s"
        ) from exc
    return bytes(data)
