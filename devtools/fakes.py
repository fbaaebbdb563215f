"""Fault-injecting stand-ins for Elasticsearch and for a rerank server: the only fakes of
the tests, the soak and the benchmarks.

Both are real aiohttp servers on a loopback port, so the sidecar talks to them over real
sockets exactly as it talks to production peers. Their behaviour can be switched while they
run, from the same event loop (tests, ``devtools.soak``) or over HTTP (``POST /_fault`` with
a JSON object of the attributes to set), so a fault can be toggled in the middle of a load
run. The benchmarks run them as processes of their own (``python -m devtools.fakes``), so
that the stand-in does not share an event loop with the load generator.

:class:`FaultModel` speaks the Cohere rerank shape (``POST /v1/rerank``). ``mode``:

* ``ok``: scores by word overlap, so the expected order is predictable;
* ``slow``: answers correctly after ``delay_s``;
* ``hang``: never answers (until the client gives up);
* ``held``: answers as ``ok`` once :meth:`release` is called (a test says when);
* ``error``: HTTP 500 (its body echoes the ``Authorization`` it received, as a careless
  server might: the sidecar must not pass that on);
* ``overloaded``: HTTP 503;
* ``nan``: one score is NaN; ``wrong_count``: one score short; ``garbage``: not JSON.

:class:`FaultES` is an Elasticsearch stand-in. With ``upstream`` set it proxies every request
to a real ES when ``mode`` is ``ok``; without one it answers ``_search`` with ``size`` (at
most ``hits``) canned hits of distinct, passage-like documents (25 to 110 words, fixed per
document id), ``_msearch`` with one such answer per search, ``/`` like ES's root endpoint,
and anything else with ``{"acknowledged": true}``. A canned answer costs a fraction of a
millisecond, so what is measured through the sidecar is the sidecar. ``mode``:

* ``ok``; ``down`` (listening socket closed, open connections cut: connection refused);
* ``status``: every request answers ``status`` (500, 503, 429...) with an ES-shaped error
  body that echoes the request's ``Authorization`` (like a verbose security realm);
* ``slow``: waits ``delay_s`` before answering as ``ok``;
* ``truncated``: sends a ``Content-Length`` and half the body, then closes;
* ``invalid_json``: 200 with a body that is not JSON;
* ``huge``: 200 with a valid search response of ``huge_bytes`` bytes, generated and streamed
  (never held in memory).

``only`` limits the fault to request paths that contain that string (``_search``); other
requests behave as ``ok``.

Run them from the command line (the fault then stays until changed over HTTP)::

    python -m devtools.fakes model --port 9301 --mode slow --delay-s 2
    python -m devtools.fakes es --port 9201 --upstream http://127.0.0.1:9200
    python -m devtools.fakes es --port 9201 --hits 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
from dataclasses import dataclass, field, fields
from typing import Any, Self

import aiohttp
from aiohttp import web

_WORD = re.compile(r"\w+")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
ES_HEADERS = {"X-Elastic-Product": "Elasticsearch"}
ES_ROOT: dict[str, Any] = {
    "name": "fault-es",
    "cluster_name": "fakes",
    "version": {"number": "8.15.0", "build_flavor": "default"},
    "tagline": "You Know, for Search",
}
_PASSAGE_TEXT = (
    "the capital city of france is paris which lies on the seine river and is known for "
    "art fashion food and culture museums such as the louvre hold paintings sculptures "
    "search engines rank documents by relevance to a query using inverted indexes and "
    "neural rerankers score each candidate passage with a cross encoder model trained on "
    "question answer pairs bananas are rich in potassium while berlin is the capital of "
    "germany elasticsearch stores shards replicated across nodes in a cluster"
)
PASSAGE_WORDS = _PASSAGE_TEXT.split(" ")


def overlap_score(query: str, doc: str) -> float:
    q = set(_WORD.findall(query.lower()))
    d = _WORD.findall(doc.lower())
    if not q or not d:
        return 0.0
    return sum(w in q for w in d) / len(d)


def passage(doc_id: int) -> str:
    """A search-hit-like passage of 25 to 110 words, the same for the same id."""
    rng = random.Random(doc_id)
    return " ".join(rng.choice(PASSAGE_WORDS) for _ in range(rng.randint(25, 110)))


class _Server:
    """A real aiohttp server on 127.0.0.1 that can be stopped and restarted on its port."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, port: int = 0) -> Self:
        app = self.make_app()
        app.router.add_post("/_fault", self._set_fault)
        # handler_cancellation: a client that gives up on a hanging request ends its handler
        # here too, so a long fault run does not pile up sleeping handlers.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            keepalive_timeout=getattr(self, "idle_timeout_s", 75.0),
        )
        await self._runner.setup()
        self.port = port
        await self._listen()
        return self

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])

    async def stop_listening(self) -> None:
        """Close the listening socket and cut every open connection (a dead process)."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for conn in list(self._runner.server.connections):
                conn.force_close()

    async def resume_listening(self) -> None:
        if self._site is None:
            await self._listen()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def _set_fault(self, request: web.Request) -> web.Response:
        changes = await request.json()
        await self.apply(changes)
        return web.json_response(self.state())

    async def apply(self, changes: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}  # type: ignore[arg-type]
        for key, value in changes.items():
            if key not in names:
                raise web.HTTPBadRequest(text=f"unknown fault attribute {key}")
            setattr(self, key, value)

    def state(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(eq=False)
class FaultModel(_Server):
    mode: str = "ok"
    delay_s: float = 0.0
    calls: int = 0
    #: The query of the latest call, as the sidecar sent it (length caps are checked on it).
    last_query: str = ""
    #: Seconds a connection may stay idle (before its first request, or between two) before
    #: this stand-in closes it; aiohttp's 75 s by default. Set at start. A short one lets a
    #: test that counts the tasks left behind count only those of the code under test (no
    #: task of this server waits on a connection the sidecar keeps in its pool).
    idle_timeout_s: float = 75.0

    def __post_init__(self) -> None:
        _Server.__init__(self)
        self._called = asyncio.Condition()
        self._released = asyncio.Event()

    @property
    def url(self) -> str:
        return self.base_url + "/v1/rerank"

    async def calls_reached(self, count: int) -> None:
        """Until ``count`` calls have reached this stand-in (a signal, not a wait)."""
        async with self._called:
            await self._called.wait_for(lambda: self.calls >= count)

    def release(self) -> None:
        """Let the calls held in mode ``held`` (and any later ones) answer."""
        self._released.set()

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/rerank", self.handle)
        app.router.add_get("/", self._root)
        return app

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        async with self._called:
            self._called.notify_all()
        body = await request.json()
        self.last_query = str(body.get("query", ""))
        mode = self.mode
        docs = [d if isinstance(d, str) else d["text"] for d in body["documents"]]
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "held":
            await self._released.wait()
        if mode == "slow":
            await asyncio.sleep(self.delay_s)
        if mode == "error":
            auth = request.headers.get("Authorization", "")
            return web.json_response({"error": f"boom (you sent {auth})"}, status=500)
        if mode == "overloaded":
            return web.json_response({"error": "busy"}, status=503)
        if mode == "garbage":
            return web.Response(text="<html>502 Bad Gateway</html>", status=200)
        scores = [overlap_score(body["query"], d) for d in docs]
        if mode == "nan" and scores:
            scores[0] = math.nan
        results = [{"index": i, "relevance_score": s} for i, s in enumerate(scores)]
        if mode == "wrong_count":
            results = results[:-1]
        # json.dumps writes NaN as the bare token NaN, as some servers do.
        return web.Response(text=json.dumps({"results": results}), content_type="application/json")


def es_error_body(status: int, reason: str) -> dict[str, Any]:
    kind = {429: "es_rejected_execution_exception", 401: "security_exception"}.get(
        status, "search_phase_execution_exception"
    )
    return {
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status,
    }


def canned_hit(i: int, index: str = "faults", text: str = "") -> dict[str, Any]:
    return {
        "_index": index,
        "_id": str(i),
        "_score": round(20.0 - i * 0.1, 3),
        "_source": {"title": f"document {i}", "body": text or passage(i)},
    }


def canned_search(size: int = 10, hits: int = 10, index: str = "faults") -> dict[str, Any]:
    shown = [canned_hit(i, index) for i in range(max(0, min(size, hits)))]
    return {
        "took": 1,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": hits, "relation": "eq"},
            "max_score": shown[0]["_score"] if shown else None,
            "hits": shown,
        },
    }


def _requested_size(raw: bytes) -> int:
    if not raw.strip():
        return 10
    try:
        return int(json.loads(raw).get("size", 10))
    except (ValueError, TypeError, AttributeError):
        return 10


@dataclass(eq=False)
class FaultES(_Server):
    upstream: str | None = None
    mode: str = "ok"
    status: int = 503
    delay_s: float = 0.0
    huge_bytes: int = 64 * 1024 * 1024
    only: str = ""
    #: Documents behind the canned answers (without ``upstream``).
    hits: int = 10
    requests: int = 0
    seen_auth: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _Server.__init__(self)
        self._session: aiohttp.ClientSession | None = None
        self._arrived = asyncio.Condition()
        # Encoded once per size: a benchmark's stand-in must cost next to nothing.
        self._search_bodies: dict[tuple[int, int], bytes] = {}

    @property
    def url(self) -> str:
        return self.base_url

    def make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=1 << 30,
            # Like ES, accept 16 KiB headers (aiohttp's own default is 8 KiB).
            handler_args={"auto_decompress": False, "max_field_size": 16384},
        )
        app.router.add_route("*", "/{tail:.*}", self.handle)

        async def session_ctx(app: web.Application) -> Any:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=120),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
            yield
            await self._session.close()

        app.cleanup_ctx.append(session_ctx)
        return app

    async def apply(self, changes: dict[str, Any]) -> None:
        await super().apply(changes)
        if self.mode == "down":
            await self.stop_listening()
        else:
            await self.resume_listening()

    async def go_down(self) -> None:
        await self.apply({"mode": "down"})

    async def come_back(self, mode: str = "ok") -> None:
        await self.apply({"mode": mode})

    async def requests_reached(self, count: int) -> None:
        """Until ``count`` requests have reached this stand-in (a signal, not a wait)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.requests >= count)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        async with self._arrived:
            self._arrived.notify_all()
        self.seen_auth.append(request.headers.get("Authorization", ""))
        mode = self.mode if self.only in request.path else "ok"
        if mode == "slow":
            await asyncio.sleep(self.delay_s)
            mode = "ok"
        if mode == "status":
            await request.read()
            auth = request.headers.get("Authorization", "")
            reason = f"rejected ({self.status}) for credentials [{auth}]"
            return web.json_response(
                es_error_body(self.status, reason), status=self.status, headers=ES_HEADERS
            )
        if mode == "truncated":
            return await self._truncated(request)
        if mode == "invalid_json":
            await request.read()
            return web.Response(
                body=b'{"took": 1, "hits": {"hits": [{"_id": "1", "_sc',
                headers={**ES_HEADERS, "Content-Type": "application/json"},
            )
        if mode == "huge":
            await request.read()
            return await self._huge(request)
        if self.upstream is None:
            return await self._canned(request)
        return await self._proxied(request, self.upstream)

    def _search_body(self, size: int) -> bytes:
        key = (size, self.hits)
        if key not in self._search_bodies:
            self._search_bodies[key] = json.dumps(canned_search(size, self.hits)).encode()
        return self._search_bodies[key]

    async def _canned(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {**ES_HEADERS, "Content-Type": "application/json"}
        if request.path.endswith("/_msearch"):
            lines = [ln for ln in raw.split(b"\n") if ln.strip()]
            sizes = [
                _requested_size(b"".join(lines[i + 1 : i + 2])) for i in range(0, len(lines), 2)
            ]
            answers = b",".join(self._search_body(size) for size in sizes)
            return web.Response(body=b'{"took":1,"responses":[' + answers + b"]}", headers=headers)
        if request.path.endswith("/_search"):
            return web.Response(body=self._search_body(_requested_size(raw)), headers=headers)
        if request.path == "/":
            return web.json_response(ES_ROOT, headers=ES_HEADERS)
        return web.json_response({"acknowledged": True}, headers=ES_HEADERS)

    async def _proxied(self, request: web.Request, upstream: str) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(
            request.method,
            upstream.rstrip("/") + request.rel_url.raw_path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=resp.status, body=data, headers=out_headers)

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        body = json.dumps(canned_search()).encode()
        resp = web.StreamResponse(
            headers={
                **ES_HEADERS,
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
            }
        )
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        await asyncio.sleep(0.05)
        if request.transport is not None:
            request.transport.close()
        return resp

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        """A valid search response of about ``huge_bytes`` bytes, produced chunk by chunk."""
        resp = web.StreamResponse(headers={**ES_HEADERS, "Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        head = b'{"took":1,"timed_out":false,"hits":{"total":{"value":1,"relation":"gte"},'
        await resp.write(head + b'"max_score":1.0,"hits":[')
        filler = "lorem ipsum " * 5000
        sent, i = 0, 0
        with contextlib.suppress(ConnectionError):
            while sent < self.huge_bytes:
                hit = canned_hit(i, "huge", filler)
                chunk = (b"," if i else b"") + json.dumps(hit).encode()
                await resp.write(chunk)
                sent += len(chunk)
                i += 1
            await resp.write(b"]}}")
            await resp.write_eof()
        return resp


async def _serve_forever(server: _Server, port: int) -> None:
    await server.start(port)
    print(f"listening on {server.base_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.fakes")
    sub = parser.add_subparsers(dest="kind", required=True)
    model = sub.add_parser("model", help="a fault-injecting rerank server")
    model.add_argument("--port", type=int, default=0)
    model.add_argument("--mode", default="ok")
    model.add_argument("--delay-s", type=float, default=0.0)
    es = sub.add_parser("es", help="a fault-injecting Elasticsearch stand-in")
    es.add_argument("--port", type=int, default=0)
    es.add_argument("--upstream", help="real ES to proxy to in mode ok")
    es.add_argument("--mode", default="ok")
    es.add_argument("--status", type=int, default=503)
    es.add_argument("--delay-s", type=float, default=0.0)
    es.add_argument("--hits", type=int, default=10, help="documents behind canned answers")
    args = parser.parse_args(argv)
    server: _Server
    if args.kind == "model":
        server = FaultModel(mode=args.mode, delay_s=args.delay_s)
    else:
        server = FaultES(
            upstream=args.upstream,
            mode=args.mode,
            status=args.status,
            delay_s=args.delay_s,
            hits=args.hits,
        )
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_serve_forever(server, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
