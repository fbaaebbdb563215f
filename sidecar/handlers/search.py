"""``_search`` and ``_msearch``: read the request, let the search service answer it, write
what it says (:mod:`sidecar.search`)."""

from __future__ import annotations

from aiohttp import web

from sidecar.handlers.outcomes import write
from sidecar.keys import CONFIG, ROLLOUT, SEARCH
from sidecar.search.call import SearchCall


async def search_handler(request: web.Request) -> web.StreamResponse:
    call = await _read(request)
    return await write(request, await request.app[SEARCH].search(call), call.client)


async def msearch_handler(request: web.Request) -> web.StreamResponse:
    call = await _read(request)
    return await write(request, await request.app[SEARCH].msearch.msearch(call), call.client)


async def _read(request: web.Request) -> SearchCall:
    return await SearchCall.read(request, request.app[CONFIG].tuning.http, request.app[ROLLOUT])
