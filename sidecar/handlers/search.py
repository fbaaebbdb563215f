"""``_search``: the heart of the sidecar.

Per search: rollout decides the mode; the plan decides whether the request can be reranked;
ES is asked for the window; the engine scores it (or says why not); the response is cut back
to the page the client asked for. Anything unexpected on the way means "ES order", never an
error that ES itself would not have produced.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from sidecar.errors import UpstreamBadResponse
from sidecar.handlers.passthrough import buffered_to_response
from sidecar.http.body import read_body
from sidecar.http.trace import trace_of
from sidecar.jsonutil import dumps, loads
from sidecar.keys import CONFIG, ENGINE, ROLLOUT, SHADOW, UPSTREAM
from sidecar.rerank.cache import CachedResponse
from sidecar.rerank.engine import CACHED, Outcome, RerankEngine
from sidecar.rerank.plan import SearchPlan, plan_search
from sidecar.rerank.respond import hits_of, rewrite
from sidecar.search_io import (
    decode_body,
    forward,
    indices_of,
    parse_es,
    score_options,
    status_body,
    upstream_headers,
    url_without,
    with_header,
)


async def search_handler(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    engine = request.app[ENGINE]
    index = request.match_info.get("index", "")
    raw = await read_body(request)
    decision = request.app[ROLLOUT].decide(
        request.remote,
        request.headers.get("X-Forwarded-For"),
        request.headers.get(request.app[ROLLOUT].config.override_header),
        indices_of(index),
    )
    trace = trace_of(request)
    trace.rule, trace.index = decision.rule, index
    body_bytes = raw
    if raw is not None:
        body_bytes = decode_body(
            raw, request.headers.get("Content-Encoding"), config.server.max_body_bytes
        )
        if body_bytes is None:
            return await forward(request, raw, Outcome("skipped", "encoded_body"))
    if decision.mode == "off" and (body_bytes is None or b'"rerank"' not in body_bytes):
        return await forward(request, raw, Outcome("skipped", "rollout_off"))
    try:
        body = loads(body_bytes) if body_bytes and body_bytes.strip() else None
    except ValueError:
        # Not JSON: ES answers its own 400 for it, exactly as without the sidecar.
        return await forward(request, raw, Outcome("skipped", "unparsed_body"))

    plan = plan_search(body, request.rel_url.query, config.rerank, engine.docs, index)
    trace.query = plan.query_text
    if decision.mode == "off" and plan.rerank:
        plan.skip_reason = "rollout_off"
    if not plan.rerank:
        outcome = Outcome("skipped", plan.skip_reason)
        if isinstance(body, dict) and "rerank" in body:
            return await forward(request, dumps(plan.body), outcome, rewritten=True)
        return await forward(request, raw, outcome)
    return await _rerank_search(request, engine, plan, decision.mode, raw or b"")


async def _rerank_search(
    request: web.Request, engine: RerankEngine, plan: SearchPlan, mode: str, raw: bytes
) -> web.Response:
    upstream = request.app[UPSTREAM]
    cache_key = ""
    if engine.responses.enabled and mode == "on":
        cache_key = engine.responses.key(
            request.headers.get("Authorization", ""),
            request.method,
            request.rel_url.raw_path_qs,
            raw,
            mode,
        )
        hit = engine.responses.get(cache_key)
        if hit is not None:
            resp = web.Response(status=hit.status, body=hit.body, headers=CIMultiDict(hit.headers))
            return with_header(resp, Outcome("cached"))

    t0 = time.perf_counter()
    es_resp = await upstream.fetch(
        request.method,
        url_without(request, upstream.base, plan.drop_params),
        upstream_headers(request, body_rewritten=True),
        dumps(plan.body),
    )
    trace = trace_of(request)
    trace.es_s = time.perf_counter() - t0
    if es_resp.status != 200:
        # ES said no: its answer goes back untouched and the model is not called.
        return with_header(buffered_to_response(es_resp), Outcome("skipped", "es_error"))
    body = parse_es(es_resp)
    hits = hits_of(body)
    if hits is None:
        raise UpstreamBadResponse("Elasticsearch returned a search response without hits")
    window = hits[: plan.window]
    opts = score_options(engine, plan.index_hint)

    if mode == "shadow":
        request.app[SHADOW].submit(engine, plan, window, trace.request_id)
        outcome = Outcome("shadow")
        rewrite(body, plan, None, opts, status_body(outcome, engine, None))
        return with_header(buffered_to_response(es_resp, body=dumps(body)), outcome)

    scored = await engine.score_hits(plan, window)
    trace.model_s = scored.timings.model_s
    trace.queue_s = scored.timings.queue_s
    rewrite(body, plan, scored.scores, opts, status_body(scored.outcome, engine, scored))
    out = buffered_to_response(es_resp, body=dumps(body))
    if cache_key and scored.scores is not None:
        engine.responses.put(cache_key, _cacheable(out, body, engine.config.rerank.annotate_field))
    return with_header(out, scored.outcome)


def _cacheable(resp: web.Response, body: Any, annotate: str | None) -> CachedResponse:
    """The response as a later cache hit serves it: its ``_rerank`` annotation says
    ``cached``, as its X-Rerank header will."""
    data = resp.body
    status = body.get(annotate) if annotate and isinstance(body, dict) else None
    if isinstance(status, dict) and status.get("status") != CACHED.status:
        data = dumps({**body, annotate: {**status, "status": CACHED.status}})
    assert isinstance(data, bytes)
    return CachedResponse(resp.status, tuple(resp.headers.items()), data)
