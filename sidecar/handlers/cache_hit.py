"""Serving a response-cache hit: only to the identity that filled it, optionally only after
ES has confirmed that identity, and with this request's own per-request headers.

The key already holds every identity header (:mod:`sidecar.rerank.identity`), so a hit is
the same caller asking the same thing. What the key cannot know is whether that caller's
credentials are still good: with ``verify_identity: authenticate`` each hit first sends the
caller's identity headers (and nothing else) to ES on ``verify_path``; only a 200 serves the
entry. Anything else, including ES being unreachable, is a miss and the search goes to ES,
which gives its own answer.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from sidecar.errors import UpstreamError
from sidecar.keys import CONFIG, ENGINE, ES
from sidecar.upstream import EsRequest

#: ES echoes the client's X-Opaque-Id on its answer; a hit does the same for this request.
OPAQUE_ID = "X-Opaque-Id"


async def identity_confirmed(request: web.Request) -> bool:
    rule = request.app[ENGINE].responses.identity
    headers: CIMultiDict[str] = CIMultiDict(rule.material(request.headers))
    path = request.app[CONFIG].rerank.response_cache.verify_path
    try:
        answer = await request.app[ES].fetch(EsRequest("GET", path, headers, None))
    except UpstreamError:
        return False
    answer.release()
    return answer.status == 200


async def cached_hit(request: web.Request, key: str) -> web.Response | None:
    """The cached answer for ``key`` as this request's response, or None (a miss)."""
    responses = request.app[ENGINE].responses
    hit = responses.get(key)
    if hit is None:
        return None
    verify = request.app[CONFIG].rerank.response_cache.verify_identity
    if verify == "authenticate" and not await identity_confirmed(request):
        return None
    headers: CIMultiDict[str] = CIMultiDict(hit.headers)
    for value in request.headers.getall(OPAQUE_ID, []):
        headers.add(OPAQUE_ID, value)
    return web.Response(status=hit.status, body=hit.body, headers=headers)
