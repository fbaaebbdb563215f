"""Request bodies: the ones the sidecar must hold (``_search``, ``_msearch``,
``/v1/rerank``: read bounded, decoded, split), and the ones it streams on (paced)."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from sidecar.encoding import TooLarge, decode, readable
from sidecar.errors import BadRequest, RequestTimeout, RequestTooLarge
from sidecar.jsonutil import loads
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


def decode_body(raw: bytes, encoding: str | None, limit: int) -> bytes | None:
    """Undo Content-Encoding (bounded); None for an encoding we do not read."""
    if not readable(encoding):
        return None
    try:
        return decode(raw, encoding, limit)
    except zlib.error as exc:
        raise BadRequest(f"request body is not valid {encoding}") from exc
    except TooLarge as exc:
        raise BadRequest(f"decompressed request body is larger than {limit} bytes") from exc


def parse_ndjson(data: bytes) -> list[tuple[Any, Any]] | None:
    """``_msearch`` header/body pairs, or None when the payload is not well-formed NDJSON
    pairs."""
    lines = [line for line in data.split(b"\n") if line.strip()]
    if len(lines) % 2:
        return None
    try:
        parsed = [loads(line) for line in lines]
    except ValueError:
        return None
    return [(parsed[i], parsed[i + 1]) for i in range(0, len(parsed), 2)]


class BodyPace:
    """Whether a client's streamed body stalled (set by :func:`paced_body`)."""

    def __init__(self) -> None:
        self.stalled = False


async def paced_body(
    content: aiohttp.StreamReader, idle_s: float, pace: BodyPace
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
