"""Small servers the benchmark suite runs as processes of their own.

    python -m es_integration.bench_servers es --port P [--hits 20] [--latency-ms 0]
    python -m es_integration.bench_servers reranker --port P [--mode hang|sleep|ok|error]
        [--delay-s 2]

``es``: an ES stand-in answering every ``_search`` with ``size`` hits (at most ``--hits``)
of distinct, passage-like documents (25 to 110 words, fixed per document id), optionally
after ``--latency-ms``; any other path answers like ES's root endpoint. It costs a fraction
of a millisecond, so what is measured through the sidecar is the sidecar (and its model).

``reranker``: a fault-injecting rerank server speaking the Cohere ``/v1/rerank`` shape (a
copy of tests/support/fake_reranker.py's behaviours): ``ok`` scores by word overlap,
``sleep`` answers after ``--delay-s``, ``hang`` never answers, ``error`` answers HTTP 500.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from typing import Any

from aiohttp import web

from es_integration.faults import overlap_score

_TEXT = (
    "the capital city of france is paris which lies on the seine river and is known for "
    "art fashion food and culture museums such as the louvre hold paintings sculptures "
    "search engines rank documents by relevance to a query using inverted indexes and "
    "neural rerankers score each candidate passage with a cross encoder model trained on "
    "question answer pairs bananas are rich in potassium while berlin is the capital of "
    "germany elasticsearch stores shards replicated across nodes in a cluster"
)
_VOCABULARY = _TEXT.split(" ")
_HEADERS = {"X-Elastic-Product": "Elasticsearch", "Content-Type": "application/json"}
_ROOT = json.dumps(
    {
        "name": "bench-stub",
        "cluster_name": "bench",
        "version": {"number": "8.15.0", "build_flavor": "default"},
        "tagline": "You Know, for Search",
    }
).encode()


def passage(doc_id: int) -> str:
    rng = random.Random(doc_id)
    return " ".join(rng.choice(_VOCABULARY) for _ in range(rng.randint(25, 110)))


def _hit(i: int) -> dict[str, Any]:
    return {
        "_index": "bench",
        "_id": str(i),
        "_score": round(20.0 - i * 0.1, 3),
        "_source": {"title": f"document {i}", "body": passage(i)},
    }


def es_app(hits: int, latency_ms: float) -> web.Application:
    all_hits = [_hit(i) for i in range(hits)]
    bodies: dict[int, bytes] = {}

    def body_for(size: int) -> bytes:
        size = max(0, min(size, hits))
        if size not in bodies:
            bodies[size] = json.dumps(
                {
                    "took": 1,
                    "timed_out": False,
                    "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                    "hits": {
                        "total": {"value": hits, "relation": "eq"},
                        "max_score": all_hits[0]["_score"] if size else None,
                        "hits": all_hits[:size],
                    },
                }
            ).encode()
        return bodies[size]

    async def answer(request: web.Request) -> web.Response:
        raw = await request.read()
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        if not request.path.endswith("/_search"):
            return web.Response(body=_ROOT, headers=_HEADERS)
        size = 10
        if raw.strip():
            try:
                size = int(json.loads(raw).get("size", 10))
            except (ValueError, TypeError, AttributeError):
                size = 10
        return web.Response(body=body_for(size), headers=_HEADERS)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def reranker_app(mode: str, delay_s: float) -> web.Application:
    async def rerank(request: web.Request) -> web.Response:
        body = await request.json()
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "sleep":
            await asyncio.sleep(delay_s)
        if mode == "error":
            return web.json_response({"error": "boom"}, status=500)
        docs = [d if isinstance(d, str) else d["text"] for d in body["documents"]]
        results = [
            {"index": i, "relevance_score": overlap_score(body["query"], d)}
            for i, d in enumerate(docs)
        ]
        return web.json_response({"results": results})

    app = web.Application()
    app.router.add_post("/v1/rerank", rerank)

    async def root(request: web.Request) -> web.Response:
        return web.json_response({"mode": mode})

    app.router.add_get("/", root)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m es_integration.bench_servers")
    sub = parser.add_subparsers(dest="kind", required=True)
    es = sub.add_parser("es")
    es.add_argument("--port", type=int, required=True)
    es.add_argument("--hits", type=int, default=20)
    es.add_argument("--latency-ms", type=float, default=0.0)
    rr = sub.add_parser("reranker")
    rr.add_argument("--port", type=int, required=True)
    rr.add_argument("--mode", choices=["ok", "sleep", "hang", "error"], default="hang")
    rr.add_argument("--delay-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.kind == "es":
        app = es_app(args.hits, args.latency_ms)
    else:
        app = reranker_app(args.mode, args.delay_s)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
