"""A fault-injecting rerank server: a real HTTP server that speaks the Cohere rerank shape.

``mode`` switches its behaviour while it runs: ``ok`` (scores by word overlap, so the order
is predictable), ``slow`` (answers after ``delay_s``), ``hang`` (never answers), ``error``
(HTTP 500), ``overloaded`` (HTTP 503), ``nan`` (a NaN score), ``wrong_count`` (one score
short).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from aiohttp.test_utils import TestServer

from es_integration.faults import overlap_score


@dataclass
class FakeReranker:
    mode: str = "ok"
    delay_s: float = 0.0
    calls: int = 0
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/v1/rerank"))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        body = await request.json()
        docs = [d if isinstance(d, str) else d["text"] for d in body["documents"]]
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        if self.mode == "error":
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "overloaded":
            return web.json_response({"error": "busy"}, status=503)
        scores = [overlap_score(body["query"], d) for d in docs]
        if self.mode == "nan":
            scores[0] = float("nan")
        results = [{"index": i, "relevance_score": s} for i, s in enumerate(scores)]
        if self.mode == "wrong_count":
            results = results[:-1]
        text = web.json_response({"results": results}).text
        assert text is not None
        return web.Response(text=text.replace("NaN", "NaN"), content_type="application/json")

    async def start(self) -> FakeReranker:
        app = web.Application()
        app.router.add_post("/v1/rerank", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
