"""Streaming: bodies pass through the split front in both directions as they are written,
never held until complete; chunked uploads stay chunked; the upstream connections are
HTTP/1.1 and kept alive.

"Not held" is shown by order, not by time: an upstream stand-in sends the rest of its answer
only once the client has the first part, and the client sends the rest of its body only once
the upstream has the first part. A proxy that held either until complete would never see
that signal (the bounded wait then ends, the transfer completes, and the test fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import ESTarget
from tests.split_front.conftest import StartFront
from tests.split_front.support import call

#: How long a side waits for the other's signal before it gives up (a failure, not a pass).
SIGNAL_S = 10.0
FIRST = b'{"_index":"staged","found":true,"_source":{"text":"'
LAST = b'"}}'
CHUNK = 64 * 1024
CHUNKS = 96  # 6 MiB after the first part
#: An answer far larger than every socket buffer on the way (ES -> nginx -> client).
HUGE_CHUNKS = 1024  # 64 MiB
#: How long a client that reads nothing gives ES to finish an answer it cannot finish.
HOLD_S = 2.0


def _filler(i: int) -> bytes:
    return (f"{i:08d}".encode() * (CHUNK // 8))[:CHUNK]


@dataclass
class Staged:
    """An ES stand-in on a real socket that records what reached it and when."""

    url: str = ""
    body_started: asyncio.Event = field(default_factory=asyncio.Event)
    client_has_first: asyncio.Event = field(default_factory=asyncio.Event)
    #: Whether the other side's signal came before the transfer ended.
    upload_early: bool | None = None
    download_early: bool | None = None
    upload_headers: dict[str, str] = field(default_factory=dict)
    huge_written: int = 0
    huge_done: asyncio.Event = field(default_factory=asyncio.Event)
    connections: list[tuple[str, int]] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)

    async def upload(self, request: web.Request) -> web.Response:
        self.upload_headers = {k.lower(): v for k, v in request.headers.items()}
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
            self.body_started.set()
        return web.json_response({"bytes": size, "sha256": digest.hexdigest()})

    async def download(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(FIRST)
        try:
            await asyncio.wait_for(self.client_has_first.wait(), SIGNAL_S)
            self.download_early = True
        except TimeoutError:
            self.download_early = False
        for i in range(CHUNKS):
            await resp.write(_filler(i))
        await resp.write(LAST)
        await resp.write_eof()
        return resp

    async def huge(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk = _filler(0)
        for _ in range(HUGE_CHUNKS):
            await resp.write(chunk)
            self.huge_written += len(chunk)
        await resp.write_eof()
        self.huge_done.set()
        return resp

    async def health(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.connections.append(tuple(peer) if peer else ("?", 0))
        self.versions.append(f"{request.version.major}.{request.version.minor}")
        return web.json_response({"status": "green"})


@pytest.fixture
async def staged() -> AsyncIterator[Staged]:
    s = Staged()
    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/_bulk", s.upload)
    app.router.add_get("/staged/_doc/big", s.download)
    app.router.add_get("/staged/_doc/huge", s.huge)
    app.router.add_get("/_cluster/health", s.health)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    s.url = str(server.make_url("")).rstrip("/")
    try:
        yield s
    finally:
        await server.close()


def _expected(last: bytes = b"") -> tuple[int, str]:
    digest = hashlib.sha256(FIRST)
    for i in range(CHUNKS):
        digest.update(_filler(i))
    digest.update(last)
    return len(FIRST) + CHUNKS * CHUNK + len(last), digest.hexdigest()


async def test_a_chunked_upload_streams_to_es(staged: Staged, split_front: StartFront) -> None:
    front = split_front(staged.url, staged.url)

    async def body() -> AsyncIterator[bytes]:
        yield FIRST
        try:
            await asyncio.wait_for(staged.body_started.wait(), SIGNAL_S)
            staged.upload_early = True
        except TimeoutError:
            staged.upload_early = False
        for i in range(CHUNKS):
            yield _filler(i)

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            front.url + "/_bulk", data=body(), headers={"Content-Type": "application/x-ndjson"}
        ) as resp,
    ):
        assert resp.status == 200
        got = await resp.json()
    size, sha = _expected()
    assert got == {"bytes": size, "sha256": sha}, "the body arrived complete"
    assert staged.upload_early is True, "nginx held the body until the client had sent it all"
    assert staged.upload_headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in staged.upload_headers


async def test_a_large_answer_streams_to_the_client(
    staged: Staged, split_front: StartFront
) -> None:
    front = split_front(staged.url, staged.url)
    digest, size = hashlib.sha256(), 0
    async with aiohttp.ClientSession() as session, session.get(front.url + "/staged/_doc/big") as r:
        assert r.status == 200
        async for chunk in r.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
            if size >= len(FIRST):
                staged.client_has_first.set()
    assert (size, digest.hexdigest()) == _expected(LAST), "the answer arrived complete"
    assert staged.download_early is True, "nginx held the answer until ES had sent it all"


async def test_a_client_that_stops_reading_holds_back_es_not_nginx(
    staged: Staged, split_front: StartFront
) -> None:
    """Unbuffered: nginx takes an answer off ES only as fast as the client reads it, so a
    large answer is never spooled to nginx's disk, and the pressure reaches ES (as it
    would with ES alone). A buffering proxy would read all 64 MiB off ES at once."""
    front = split_front(staged.url, staged.url)
    total = HUGE_CHUNKS * CHUNK
    async with (
        aiohttp.ClientSession() as session,
        session.get(front.url + "/staged/_doc/huge") as r,
    ):
        size = len(await r.content.readany())
        # The client reads nothing more: ES cannot finish (a bounded wait for what must not
        # happen; it ends the same way on any machine).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(staged.huge_done.wait(), HOLD_S)
        held_back = staged.huge_written
        assert not staged.huge_done.is_set(), "nginx took the whole answer off ES"
        async for chunk in r.content.iter_any():
            size += len(chunk)
    assert held_back < total
    assert size == total and staged.huge_done.is_set()
    assert "temporary file" not in front.log()
    assert list((front.dir / "tmp").rglob("*.*")) == []


async def test_upstream_connections_are_http_1_1_and_kept_alive(
    staged: Staged, split_front: StartFront
) -> None:
    front = split_front(staged.url, staged.url)
    for _ in range(10):
        answer = await call(front.url, "GET", "/_cluster/health")
        assert answer.status == 200
    assert staged.versions == ["1.1"] * 10
    assert len(set(staged.connections)) == 1, "one upstream connection, reused"


async def test_a_multi_megabyte_bulk_reaches_es_complete(
    es: ESTarget, split_front: StartFront
) -> None:
    """A real ES: a chunked _bulk of several MB through nginx, and its large answer."""
    index, docs = "split-front-bulk", 12_000
    front = split_front(es.url, es.url)
    text = "the capital city of france is paris which lies on the seine river " * 5

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, docs, 500):
            lines = []
            for i in range(start, start + 500):
                lines.append(json.dumps({"index": {"_index": index, "_id": str(i)}}))
                lines.append(json.dumps({"title": f"doc {i}", "body": text}))
            yield ("\n".join(lines) + "\n").encode()

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            front.url + "/_bulk?refresh=true",
            data=body(),
            headers={"Content-Type": "application/x-ndjson"},
        ) as resp,
    ):
        assert resp.status == 200
        raw = await resp.read()
    answer = json.loads(raw)
    assert answer["errors"] is False
    assert [item["index"]["_id"] for item in answer["items"]] == [str(i) for i in range(docs)]
    assert len(raw) > 1 << 20, "a large answer"
    count = await call(front.url, "GET", f"/{index}/_count")
    assert count.json()["count"] == docs
    assert (await call(es.url, "DELETE", f"/{index}")).status == 200
