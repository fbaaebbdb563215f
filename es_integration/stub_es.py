"""A minimal, fast ES stand-in for overhead benchmarks: canned ``_search`` answers.

Real ES (or noida-db) takes milliseconds per search, which drowns a sub-millisecond proxy
overhead in noise. This stub answers in a fraction of a millisecond, so ``bench_proxy`` can
measure what the sidecar itself adds.

    python -m es_integration.stub_es --port 9299
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

_HITS = [
    {
        "_index": "bench",
        "_id": str(i),
        "_score": 10.0 - i,
        "_source": {"title": f"document {i}", "body": "lorem ipsum " * 20},
    }
    for i in range(10)
]
_BODY = json.dumps(
    {
        "took": 1,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": 10, "relation": "eq"}, "max_score": 10.0, "hits": _HITS},
    }
).encode()
_HEADERS = {"X-Elastic-Product": "Elasticsearch", "Content-Type": "application/json"}


async def answer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_BODY, headers=_HEADERS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
