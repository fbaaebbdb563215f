"""The response cache on the search path: a hit is served only to the identity that filled
it, optionally only after ES has confirmed that identity, and with this request's own
per-request headers.

The key holds every identity header (:mod:`sidecar.rerank.identity`), so a hit is the same
caller asking the same thing. What the key cannot know is whether that caller's
credentials are still good: with ``verify_identity: authenticate`` each hit first sends the
caller's identity headers (and nothing else) to ES on ``verify_path``; only a 200 serves the
entry. Anything else, including ES being unreachable, is a miss and the search goes to ES,
which gives its own answer.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from sidecar.config import ResponseCacheConfig
from sidecar.errors import UpstreamError
from sidecar.rerank.cache import CachedResponse, ResponseCache
from sidecar.rerank.outcome import APPLIED, CACHED
from sidecar.rerank.render import render
from sidecar.rerank.step import Applied
from sidecar.search.call import SearchCall
from sidecar.upstream import EsClient, EsRequest

#: ES echoes the client's X-Opaque-Id on its answer; a hit does the same for this request.
OPAQUE_ID = "X-Opaque-Id"


class ResponseStore:
    def __init__(
        self,
        cache: ResponseCache,
        config: ResponseCacheConfig,
        es: EsClient,
        annotate_field: str | None,
    ) -> None:
        self.cache = cache
        self.config = config
        self.es = es
        self.annotate_field = annotate_field

    def key(self, call: SearchCall, mode: str) -> str:
        """The entry's key ("" when the cache is off). Every identity and representation
        header is in it."""
        if not self.cache.enabled:
            return ""
        path = call.rel_url.raw_path_qs
        return self.cache.key(call.headers, call.method, path, call.body or b"", mode)

    async def hit(self, call: SearchCall, key: str) -> web.Response | None:
        """The cached answer for ``key`` as this request's response, or None (a miss)."""
        entry = await self.cache.lookup(key) if key else None
        if entry is None:
            return None
        if self.config.verify_identity == "authenticate" and not await self._confirmed(call):
            return None
        headers: CIMultiDict[str] = CIMultiDict(entry.headers)
        for value in call.headers.getall(OPAQUE_ID, []):
            headers.add(OPAQUE_ID, value)
        return web.Response(status=entry.status, body=entry.body, headers=headers)

    async def _confirmed(self, call: SearchCall) -> bool:
        headers: CIMultiDict[str] = CIMultiDict(self.cache.identity.material(call.headers))
        try:
            verify = EsRequest("GET", self.config.verify_path, headers, None)
            answer = await self.es.fetch(verify, client=call.client)
        except UpstreamError:
            return False
        answer.release()
        return answer.status == 200

    def put(self, key: str, response: web.Response, applied: Applied) -> None:
        """Keep a reranked answer as a later hit serves it: its annotation says ``cached``,
        as its X-Rerank header will. It is kept uncompressed (the key does not tell clients
        that accept gzip from those that do not)."""
        if applied.outcome not in (APPLIED, CACHED):
            return  # a window cut short by load is not kept: the next one may fit more
        data: bytes | None = applied.body
        body, annotate = applied.document, self.annotate_field
        status = body.get(annotate) if annotate and isinstance(body, dict) else None
        if annotate and isinstance(status, dict) and status.get("status") != CACHED.status:
            data = render({**body, annotate: {**status, "status": CACHED.status}}, applied.body)
        if data is None:
            return
        headers = tuple(
            (k, v) for k, v in response.headers.items() if k.lower() != "content-encoding"
        )
        self.cache.put(key, CachedResponse(response.status, headers, data))
