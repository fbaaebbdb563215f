"""Headers: what ES receives through the split front is what it receives from the client
directly (method, raw path and query, every header in order, the body bytes), but for the
X-Forwarded-For line nginx writes and the per-connection fields; ES's answer comes back as
ES wrote it, compression included. A wire tap in front of ES records both paths."""

from __future__ import annotations

import gzip
import json

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from tests.conftest import ESTarget
from tests.split_front.conftest import StartFront
from tests.split_front.support import call
from tests.support.search import SAMPLE
from tests.support.wire_tap import Seen, wire_tap

#: What a client of ES sends, with the spellings a proxy could mangle: an underscore in a
#: name, a repeated field, an empty value, mixed case, vendor media types, credentials.
CLIENT_HEADERS = [
    ("Authorization", "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="),
    ("Accept", "application/vnd.elasticsearch+json; compatible-with=8"),
    ("Content-Type", "application/vnd.elasticsearch+json; compatible-with=8"),
    ("User-Agent", "elasticsearch-py/8.15.1 (Python/3.11.7; elastic-transport/8.15.0)"),
    ("x-elastic-client-meta", "es=8.15.1,py=3.11.7,t=8.15.0"),
    ("X-Opaque-Id", "split-front-test"),
    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("my_custom_header", "underscore"),
    ("X-Repeated", "one"),
    ("X-Repeated", "two"),
    ("X-Empty", ""),
    ("Accept-Encoding", "gzip"),
]
#: The connection's own fields (they differ between any two clients) and the one nginx sets.
IGNORED = frozenset(
    {"host", "connection", "keep-alive", "content-length", "transfer-encoding", "x-forwarded-for"}
)
PATHS = [
    ("POST", f"/{SAMPLE}/_count?pretty&q=title:library%20card", json.dumps({}).encode()),
    ("GET", f"/{SAMPLE}/_doc/a%2Fb?routing=x%20y&_source_includes=title,body", None),
    ("PUT", "/split-front-headers/_doc/%C3%A9t%C3%A9?refresh=wait_for", b'{"title": "\xc3\xa9"}'),
]


def _one(seen: list[Seen]) -> Seen:
    assert len(seen) == 1, [s.path_qs for s in seen]
    return seen[0]


def _xff(seen: Seen) -> list[str]:
    return [v for k, v in seen.header_set(ignore=frozenset()) if k == "x-forwarded-for"]


async def test_client_headers_reach_es_unchanged(
    es: ESTarget, split_front: StartFront, sample_index: str
) -> None:
    async with wire_tap(es.url) as tap:
        front = split_front(tap.url, tap.url)
        for method, path, data in PATHS:
            direct_answer = await call(tap.url, method, path, data=data, headers=CLIENT_HEADERS)
            direct = _one(tap.take())
            via_answer = await call(front.url, method, path, data=data, headers=CLIENT_HEADERS)
            via = _one(tap.take())
            assert (via.method, via.path_qs, via.body) == (
                direct.method,
                direct.path_qs,
                data or b"",
            )
            # Every client header, byte for byte and in order (nginx writes its own first).
            assert via.header_set(ignore=IGNORED) == direct.header_set(ignore=IGNORED), path
            assert _xff(direct) == [] and _xff(via) == ["127.0.0.1"]
            # The upstream's name, as any client of ES sends it (the sidecar: its es.url).
            assert dict(via.header_set(ignore=frozenset()))["host"] == "elasticsearch"
            if method == "PUT":
                # Created directly, then updated through nginx.
                assert (direct_answer.status, via_answer.status) == (201, 200)
            else:
                assert via_answer.status == direct_answer.status, via_answer.body[:300]
    assert (await call(es.url, "DELETE", "/split-front-headers")).status == 200


async def test_x_forwarded_for_gets_the_peer_appended(
    es: ESTarget, split_front: StartFront
) -> None:
    async with wire_tap(es.url) as tap:
        front = split_front(tap.url, tap.url)
        lines = [("X-Forwarded-For", "10.1.2.3"), ("X-Forwarded-For", "10.4.5.6, 10.7.8.9")]
        await call(front.url, "GET", "/", headers=lines, source="127.0.0.5")
        (line,) = _xff(_one(tap.take()))
    # The client's lines are one list (RFC 9110 5.3), joined, then the address nginx saw.
    assert line == "10.1.2.3, 10.4.5.6, 10.7.8.9, 127.0.0.5"


async def test_compression_is_left_as_is(
    es: ESTarget, split_front: StartFront, sample_index: str
) -> None:
    """A gzip body reaches ES as gzip; ES's answer is neither compressed nor decompressed."""
    body = gzip.compress(json.dumps({"query": {"match": {"title": "library"}}}).encode())
    sent = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    async with wire_tap(es.url) as tap:
        front = split_front(tap.url, tap.url)
        for accept in ("gzip", "identity", None):
            headers = sent + ([("Accept-Encoding", accept)] if accept else [])
            direct = await call(tap.url, "POST", f"/{SAMPLE}/_count", data=body, headers=headers)
            direct_seen = _one(tap.take())
            via = await call(front.url, "POST", f"/{SAMPLE}/_count", data=body, headers=headers)
            via_seen = _one(tap.take())
            assert via_seen.body == direct_seen.body == body
            assert via.status == direct.status == 200
            assert via.headers.get("Content-Encoding") == direct.headers.get("Content-Encoding")
            assert via.body == direct.body, accept
            assert via.headers.get("Content-Type") == direct.headers.get("Content-Type")


async def test_nothing_is_compressed_on_the_way(split_front: StartFront) -> None:
    """An ES that answers uncompressed to a client that accepts gzip: the answer arrives
    uncompressed, as ES wrote it, and ES saw the client's Accept-Encoding."""
    seen: list[str] = []
    plain = json.dumps({"hits": [{"_id": str(i), "text": "word " * 50} for i in range(40)]})

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding", ""))
        return web.Response(body=plain.encode(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/plain/_doc/1", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        front = split_front(url, url)
        via = await call(front.url, "GET", "/plain/_doc/1", headers=[("Accept-Encoding", "gzip")])
    finally:
        await server.close()
    assert seen == ["gzip"]
    assert "Content-Encoding" not in via.headers
    assert via.body == plain.encode()


async def test_es_response_headers_come_back(es: ESTarget, split_front: StartFront) -> None:
    """ES's own headers reach the client; nginx adds only Server and Date of its own."""
    front = split_front(es.url, es.url)
    direct = await call(es.url, "GET", "/")
    via = await call(front.url, "GET", "/")
    own = {"server", "date", "connection", "keep-alive", "content-length", "transfer-encoding"}

    def end_to_end(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
        return [(k.lower(), v) for k, v in headers.items() if k.lower() not in own]

    assert end_to_end(via.headers) == end_to_end(direct.headers)
    assert (via.status, via.body) == (direct.status, direct.body)
