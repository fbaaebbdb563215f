"""Request bodies: the ones the sidecar must hold (``_search``, ``_msearch``,
``/v1/rerank``: read bounded, decoded, split), and the ones it streams on (paced)."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from sidecar.config import HttpTuning
from sidecar.encoding import TooLarge, decode, readable
from sidecar.errors import BadRequest, RequestTimeout, RequestTooLarge
from sidecar.http.pace import Pace
from sidecar.jsonutil import loads

_CHUNK = 64 * 1024


async def read_body(request: web.Request, server: HttpTuning) -> bytes | None:
    """The whole request body (None when there is none), bounded by
    ``tuning.http.max_body_bytes`` (413 past it, without reading the rest) and by
    ``tuning.http.client_read_timeout_s`` (a slow client cannot hold a handler forever)."""
    if not request.body_exists:
        return None
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
    lines = NdjsonLines.parse(data)
    return None if lines is None else lines.pairs


@dataclass
class NdjsonLines:
    """An ``_msearch`` payload as the client sent it: its segments (split on ``\\n``,
    blank ones and ``\\r`` kept), which of them are lines, and those lines parsed in pairs.
    :meth:`replaced` writes it back with some lines changed and every other byte as sent."""

    segments: list[bytes]
    #: Indices into ``segments`` of the non-blank lines: header, body, header, body...
    lines: list[int]
    pairs: list[tuple[Any, Any]]

    @classmethod
    def parse(cls, data: bytes) -> NdjsonLines | None:
        segments = data.split(b"\n")
        lines = [i for i, seg in enumerate(segments) if seg.strip()]
        if len(lines) % 2:
            return None
        try:
            parsed = [loads(segments[i]) for i in lines]
        except ValueError:
            return None
        pairs = [(parsed[i], parsed[i + 1]) for i in range(0, len(parsed), 2)]
        return cls(segments, lines, pairs)

    def body_line(self, search: int) -> bytes:
        return self.segments[self.lines[2 * search + 1]]

    def replaced(self, bodies: dict[int, bytes]) -> bytes:
        """The payload with the bodies of the given searches replaced."""
        segments = list(self.segments)
        for search, body in bodies.items():
            at = self.lines[2 * search + 1]
            segments[at] = body + (b"\r" if segments[at].endswith(b"\r") else b"")
        return b"\n".join(segments)


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def has_duplicate_keys(data: bytes | str) -> bool:
    """Whether a JSON document repeats a key in any object. ES refuses such a body (400);
    the sidecar's parser would keep the last one, so a body it must rewrite is checked
    first and, when this says yes (or it cannot tell: nesting past the stack), ES gets the
    client's own bytes and gives its own answer."""
    try:
        json.loads(data, object_pairs_hook=_no_duplicates)
    except _Duplicate:
        return True
    except RecursionError:
        return True
    except ValueError:
        return False
    return False


class BodyPace:
    """Whether a client's streamed body stalled (set by :func:`paced_body`)."""

    def __init__(self) -> None:
        self.stalled = False


async def paced_body(
    content: aiohttp.StreamReader, idle_s: float, pace: BodyPace, rate: Pace | None = None
) -> AsyncIterator[bytes]:
    """The client's body as it arrives, for streaming to ES. A pause longer than ``idle_s``
    ends it (slowloris), and so does an average below ``rate``: a large ``_bulk`` may take
    long in all, but must keep moving."""
    while True:
        wait = idle_s if rate is None else min(idle_s, rate.allowance())
        try:
            async with asyncio.timeout(wait):
                chunk = await content.readany()
        except TimeoutError as exc:
            pace.stalled = True
            raise RequestTimeout(f"request body stalled for more than {wait:g}s") from exc
        if not chunk:
            return
        if rate is not None:
            rate.moved += len(chunk)
        yield chunk
