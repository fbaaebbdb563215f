"""A wire tap: a transparent HTTP proxy that records exactly what the server behind it
receives (method, raw path and query, headers in order, body bytes).

The local ES-compatible servers accept what real Elasticsearch refuses, so tests compare
what the tap saw on the direct path with what it saw through the sidecar: that comparison
holds against any server, strict or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

#: Headers that describe one connection, not the request; they differ between any two
#: clients and are not part of what a request means.
CONNECTION_HEADERS = frozenset({"host", "connection", "keep-alive", "content-length"})


@dataclass(frozen=True)
class Seen:
    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header_set(self, *, ignore: frozenset[str] = CONNECTION_HEADERS) -> list[tuple[str, str]]:
        """Headers as (lower-case name, value), in order, without per-connection ones."""
        return [(k.lower(), v) for k, v in self.headers if k.lower() not in ignore]


#: What a test puts in the server's place for some requests: an answer of its own (a fault),
#: or None to let the request through.
Answer = Callable[[Seen], Awaitable[web.Response | None]]


@dataclass
class WireTap:
    url: str
    seen: list[Seen] = field(default_factory=list)
    #: Set by a test to answer (or hold) requests itself: ES refusing, slow or down.
    answer: Answer | None = None

    def take(self) -> list[Seen]:
        out, self.seen = self.seen, []
        return out


@asynccontextmanager
async def wire_tap(target: str) -> AsyncIterator[WireTap]:
    session = aiohttp.ClientSession(
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
    )
    tap: WireTap

    async def record(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(
            request.method,
            request.raw_path,
            tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers),
            body,
        )
        tap.seen.append(seen)
        if tap.answer is not None:
            own = await tap.answer(seen)
            if own is not None:
                return own
        headers = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in ("host", "transfer-encoding")
        ]
        async with session.request(
            request.method,
            target.rstrip("/") + request.raw_path,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            # The server's headers as they are: none added (aiohttp would add its own
            # Content-Type to a bare body), none dropped but the per-connection ones.
            kept: CIMultiDict[str] = CIMultiDict(
                (k, v)
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            )
            if request.method == "HEAD":
                kept.popall("Content-Length", None)
                out = web.Response(status=upstream.status, headers=kept)
                if "Content-Length" in upstream.headers:
                    out.headers["Content-Length"] = upstream.headers["Content-Length"]
                return out
            return web.Response(status=upstream.status, body=data, headers=kept)

    app = web.Application(client_max_size=1 << 30, handler_args={"auto_decompress": False})
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    tap = WireTap(str(server.make_url("")).rstrip("/"))
    try:
        yield tap
    finally:
        await server.close()
        await session.close()
