"""``_search``: read the request, let the rerank step plan it, ask ES through the client,
let the step rewrite the answer, write the response.

Anything unexpected on the way means "ES order", never an error that ES itself would not
have produced.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from sidecar.handlers.outcomes import answer, forward
from sidecar.http.body import decode_body, read_body
from sidecar.http.trace import trace_of
from sidecar.jsonutil import dumps, loads
from sidecar.keys import CONFIG, ENGINE, ES, ROLLOUT, STEP
from sidecar.rerank.cache import CachedResponse
from sidecar.rerank.outcome import APPLIED, CACHED, Outcome
from sidecar.rerank.plan import RERANK_KEY, SearchPlan
from sidecar.rerank.step import ES_ERROR, Applied
from sidecar.upstream import EsRequest


def indices_of(index: str) -> list[str]:
    return [i for i in index.split(",") if i] if index else []


async def search_handler(request: web.Request) -> web.StreamResponse:
    index = request.match_info.get("index", "")
    raw = await read_body(request)
    rollout = request.app[ROLLOUT]
    decision = rollout.decide(rollout.client(request.remote, request.headers), indices_of(index))
    trace = trace_of(request)
    trace.rule, trace.index = decision.rule, index
    as_sent = EsRequest.passthrough(request, raw)
    body_bytes = raw
    if raw is not None:
        limit = request.app[CONFIG].server.max_body_bytes
        body_bytes = decode_body(raw, request.headers.get("Content-Encoding"), limit)
        if body_bytes is None:
            return await forward(request, as_sent, Outcome("skipped", "encoded_body"))
    if decision.mode == "off" and (body_bytes is None or b'"rerank"' not in body_bytes):
        return await forward(request, as_sent, Outcome("skipped", "rollout_off"))
    try:
        body = loads(body_bytes) if body_bytes and body_bytes.strip() else None
    except ValueError:
        # Not JSON: ES answers its own 400 for it, exactly as without the sidecar.
        return await forward(request, as_sent, Outcome("skipped", "unparsed_body"))

    plan = request.app[STEP].plan(body, request.rel_url.query, index, decision.mode)
    trace.query = plan.query_text
    if not plan.rerank:
        outcome = Outcome("skipped", plan.skip_reason)
        if isinstance(body, dict) and RERANK_KEY in body:
            return await forward(request, EsRequest.rewritten(request, dumps(plan.body)), outcome)
        return await forward(request, as_sent, outcome)
    return await _rerank(request, plan, raw or b"")


async def _rerank(request: web.Request, plan: SearchPlan, raw: bytes) -> web.Response:
    responses = request.app[ENGINE].responses
    cache_key = ""
    if responses.enabled and plan.mode == "on":
        cache_key = responses.key(
            request.headers.get("Authorization", ""),
            request.method,
            request.rel_url.raw_path_qs,
            raw,
            plan.mode,
        )
        hit = responses.get(cache_key)
        if hit is not None:
            resp = web.Response(status=hit.status, body=hit.body, headers=CIMultiDict(hit.headers))
            return answer(request, resp, CACHED)

    req = EsRequest.rewritten(request, dumps(plan.body), plan.drop_params)
    es_resp = await request.app[ES].fetch(req)
    trace = trace_of(request)
    trace.es_s = es_resp.elapsed_s
    if es_resp.status != 200:
        # ES said no: its answer goes back untouched and the model is not called.
        return answer(request, es_resp.response(), ES_ERROR)
    limit = request.app[CONFIG].es.max_response_bytes
    applied = await request.app[STEP].apply(plan, es_resp.decoded(limit), trace.request_id)
    trace.model_s, trace.queue_s = applied.timings.model_s, applied.timings.queue_s
    out = es_resp.response(applied.body)
    if cache_key and applied.outcome in (APPLIED, CACHED):
        annotate = request.app[CONFIG].rerank.annotate_field
        responses.put(cache_key, _cacheable(out, applied, annotate))
    return answer(request, out, applied.outcome)


def _cacheable(resp: web.Response, applied: Applied, annotate: str | None) -> CachedResponse:
    """The response as a later cache hit serves it: its ``_rerank`` annotation says
    ``cached``, as its X-Rerank header will."""
    data, body = applied.body, applied.document
    status = body.get(annotate) if annotate and isinstance(body, dict) else None
    if annotate and isinstance(status, dict) and status.get("status") != CACHED.status:
        data = dumps({**body, annotate: {**status, "status": CACHED.status}})
    return CachedResponse(resp.status, tuple(resp.headers.items()), data)
