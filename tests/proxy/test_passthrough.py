"""Pass-through semantics against a real recording upstream on a real socket.

The upstream here is a small aiohttp server that records what it receives, so the tests can
see exactly what the sidecar sends: headers, path, query string and body bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.app import create_app
from sidecar.config import build_config
from tests.support.search import BUNDLED_MODEL


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    seen: list[Seen] = field(default_factory=list)
    delay_s: float = 0.0


def _upstream_app(rec: Recorder) -> web.Application:
    async def any_route(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
        if rec.delay_s:
            await asyncio.sleep(rec.delay_s)
        path = request.path
        if path == "/gzipped":
            payload = gzip.compress(b'{"hello":"compressed"}')
            return web.Response(
                body=payload,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        if path == "/big":
            resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for _ in range(64):
                await resp.write(b"x" * 65536)
            await resp.write_eof()
            return resp
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            return web.json_response({"error": "from upstream", "status": code}, status=code)
        return web.json_response(
            {"ok": True, "len": len(body)},
            headers={"X-Elastic-Product": "Elasticsearch", "Connection": "keep-alive"},
        )

    app = web.Application(client_max_size=1 << 30, handler_args={"auto_decompress": False})
    app.router.add_route("*", "/{tail:.*}", any_route)
    return app


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Recorder, TestServer]]:
    rec = Recorder()
    server = TestServer(_upstream_app(rec), host="127.0.0.1")
    await server.start_server()
    yield rec, server
    await server.close()


@contextlib.asynccontextmanager
async def _sidecar(url: str, read_s: float = 30.0) -> AsyncIterator[str]:
    """An in-process sidecar in front of ``url``; yields its base URL."""
    # Timeouts far above any answer's time: the bundled model loads in this process's
    # threads meanwhile, and a stalled event loop must not look like a slow upstream (the
    # timeout itself: test_slow_es_is_504_es_shaped).
    config = build_config(
        {
            "es": {"url": url, "timeouts": {"connect_s": 30.0, "read_s": read_s}},
            "tuning": {"http": {"max_body_bytes": 1024 * 1024}},
            "model": {"name": BUNDLED_MODEL},
        }
    )
    srv = TestServer(create_app(config), host="127.0.0.1")
    await srv.start_server()
    try:
        yield str(srv.make_url("")).rstrip("/")
    finally:
        await srv.close()


@pytest.fixture
async def sidecar_url(upstream: tuple[Recorder, TestServer]) -> AsyncIterator[str]:
    _, up = upstream
    async with _sidecar(str(up.make_url("/"))) as url:
        yield url


async def test_headers_path_and_query_pass_through(
    upstream: tuple[Recorder, TestServer], sidecar_url: str
) -> None:
    rec, _ = upstream
    async with aiohttp.ClientSession() as s:
        resp = await s.get(
            sidecar_url + "/idx/_doc/1?pretty&q=a%20b&x=1&x=2",
            headers={
                "Authorization": "ApiKey c2VjcmV0",
                "X-Opaque-Id": "req-7",
                "Connection": "X-Drop-Me",
                "X-Drop-Me": "hop",
                "Proxy-Authorization": "Basic Zm9v",
                "TE": "trailers",
            },
        )
        assert resp.status == 200
        assert resp.headers["X-Elastic-Product"] == "Elasticsearch"
        await resp.read()
    seen = rec.seen[-1]
    assert seen.path_qs == "/idx/_doc/1?pretty&q=a%20b&x=1&x=2"
    assert seen.headers["Authorization"] == "ApiKey c2VjcmV0"
    assert seen.headers["X-Opaque-Id"] == "req-7"
    for hop in ("X-Drop-Me", "Proxy-Authorization", "TE"):
        assert hop not in seen.headers


async def test_upstream_status_and_body_unchanged(sidecar_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for code in (429, 500, 503, 404):
            resp = await s.get(f"{sidecar_url}/status/{code}")
            assert resp.status == code
            assert await resp.json() == {"error": "from upstream", "status": code}


async def test_head_keeps_content_length(sidecar_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        resp = await s.head(sidecar_url + "/idx")
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == len(b'{"ok": true, "len": 0}')
        assert await resp.read() == b""


async def test_compression_passes_through_both_ways(
    upstream: tuple[Recorder, TestServer], sidecar_url: str
) -> None:
    rec, _ = upstream
    raw = b'{"index":{}}\n{"title":"gz"}\n'
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        resp = await s.post(
            sidecar_url + "/_bulk",
            data=gzip.compress(raw),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"},
        )
        assert resp.status == 200
        assert gzip.decompress(rec.seen[-1].body) == raw
        assert rec.seen[-1].headers["Content-Encoding"] == "gzip"

        resp = await s.get(sidecar_url + "/gzipped", headers={"Accept-Encoding": "gzip"})
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await resp.read()) == b'{"hello":"compressed"}'


async def test_large_bodies_stream_past_the_buffer_limit(
    upstream: tuple[Recorder, TestServer],
) -> None:
    """A 12 MiB _bulk goes through although intercepted bodies are capped at 1 MiB. ES
    answers once it has read the whole body, so the read timeout is the upload's length:
    a generous one, as this is about streaming, not about how fast this machine is."""
    rec, up = upstream
    chunk = b'{"index":{}}\n{"t":"' + b"y" * 1000 + b'"}\n'

    async def gen() -> AsyncIterator[bytes]:
        for _ in range(12 * 1024):
            yield chunk

    async with (
        _sidecar(str(up.make_url("/")), read_s=60) as sidecar_url,
        aiohttp.ClientSession() as s,
    ):
        resp = await s.post(sidecar_url + "/_bulk", data=gen())
        assert resp.status == 200
        assert (await resp.json())["len"] == len(chunk) * 12 * 1024
        resp = await s.get(sidecar_url + "/big")
        assert len(await resp.read()) == 64 * 65536
    assert len(rec.seen[-2].body) == len(chunk) * 12 * 1024


async def test_intercepted_body_limit_is_413(sidecar_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        resp = await s.post(
            sidecar_url + "/idx/_search", data=io.BytesIO(b"{" + b" " * (2 << 20) + b"}")
        )
        assert resp.status == 413
        body = await resp.json()
        assert body["status"] == 413
        assert body["error"]["type"] == "content_too_long_exception"


async def test_absolute_uri_and_host_cannot_redirect(
    upstream: tuple[Recorder, TestServer], sidecar_url: str
) -> None:
    rec, up = upstream
    host, port = sidecar_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET http://169.254.169.254/latest/meta-data?x=1 HTTP/1.1\r\n"
        b"Host: 169.254.169.254\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert rec.seen[-1].path_qs == "/latest/meta-data?x=1"
    # The upstream saw its own host, not the one the client named.
    assert rec.seen[-1].headers["Host"] == f"127.0.0.1:{up.port}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_es_is_502_es_shaped() -> None:
    async with (
        _sidecar(f"http://127.0.0.1:{_closed_port()}") as sidecar_url,
        aiohttp.ClientSession() as s,
    ):
        for path in ("/", "/idx/_search"):
            resp = await s.get(sidecar_url + path)
            assert resp.status == 502
            body = await resp.json()
            assert body["status"] == 502
            assert set(body["error"]) >= {"type", "reason"}
            assert "Traceback" not in body["error"]["reason"]


async def test_slow_es_is_504_es_shaped(upstream: tuple[Recorder, TestServer]) -> None:
    rec, up = upstream
    rec.delay_s = 2.0
    async with (
        _sidecar(str(up.make_url("/")), read_s=0.5) as sidecar_url,
        aiohttp.ClientSession() as s,
    ):
        for path in ("/slow", "/idx/_search"):
            resp = await s.get(sidecar_url + path)
            assert resp.status == 504
            body = await resp.json()
            assert body == {
                "error": {
                    "root_cause": [body["error"]["root_cause"][0]],
                    "type": "upstream_timeout_exception",
                    "reason": "Elasticsearch did not answer in time",
                },
                "status": 504,
            }
