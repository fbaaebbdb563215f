"""``_search``: read the request, let the rerank step plan it, ask ES through the client,
let the step rewrite the answer, write the response.

Anything unexpected on the way means "ES order", never an error that ES itself would not
have produced: a body the sidecar cannot rewrite faithfully (duplicate keys, nesting past
what it can write) reaches ES as the client's bytes; an answer it cannot give back as
rewritten (a result window the index refuses, not JSON, too deep to write) is asked for
again with the client's own request and relayed.
"""

from __future__ import annotations

from aiohttp import web

from sidecar.errors import UpstreamResponseTooLarge
from sidecar.handlers.cache_hit import cached_hit
from sidecar.handlers.outcomes import answer, fair_key, forward
from sidecar.http.body import decode_body, has_duplicate_keys, read_body
from sidecar.http.trace import trace_of
from sidecar.jsonutil import loads
from sidecar.keys import CONFIG, ENGINE, ES, ROLLOUT, STEP
from sidecar.rerank.cache import CachedResponse
from sidecar.rerank.outcome import APPLIED, CACHED, Outcome
from sidecar.rerank.plan import SearchPlan
from sidecar.rerank.render import compact, render
from sidecar.rerank.step import CPU_SHARE, ES_ERROR, RESULT_WINDOW, Applied, Reask
from sidecar.upstream import BufferedResponse, BufferFull, EsRequest

#: Media types ES answers in that are not JSON (``?format=`` or ``Accept``/``Content-Type``).
OTHER_FORMATS = ("yaml", "cbor", "smile")


def indices_of(index: str) -> list[str]:
    return [i for i in index.split(",") if i] if index else []


def other_format(request: web.BaseRequest) -> bool:
    """Whether ES will answer this request in a format other than JSON: the sidecar
    cannot rewrite that answer, so such a search is passed through (``reason=format``)."""
    fmt = request.rel_url.query.get("format", "").strip().lower()
    if fmt in OTHER_FORMATS:
        return True
    for name in ("Accept", "Content-Type"):
        value = request.headers.get(name, "").lower()
        if any(f in value for f in OTHER_FORMATS):
            return True
    return False


async def search_handler(request: web.Request) -> web.StreamResponse:
    index = request.match_info.get("index", "")
    raw = await read_body(request)
    rollout = request.app[ROLLOUT]
    caller = rollout.client(request.remote, request.headers)
    decision = rollout.decide(caller, indices_of(index))
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

    step = request.app[STEP]
    force = "format" if other_format(request) else None
    plan = step.plan(body, request.rel_url.query, index, decision.mode, force_skip=force)
    trace.query = plan.query_text
    if plan.rewrites_body and body_bytes is not None and has_duplicate_keys(body_bytes):
        # ES refuses a body with a repeated key; the sidecar's parse kept only the last
        # one. ES gets the client's bytes and answers them.
        return await forward(request, as_sent, Outcome("skipped", "duplicate_keys"))
    if not plan.rerank:
        return await _unranked(request, plan, as_sent)
    client = fair_key(caller.addr)
    held = await step.hold(client, plan.settings.budget_s)
    if held.whole_budget:
        plan = step.plan(body, request.rel_url.query, index, decision.mode, force_skip=CPU_SHARE)
        return await _unranked(request, plan, as_sent)
    data = compact(plan.body) if plan.body is not None else None
    if plan.body is not None and data is None:
        return await forward(request, as_sent, Outcome("skipped", "unserializable_body"))
    rewritten = EsRequest.rewritten(request, data, plan.drop_params, plan.set_params)
    return await _rerank(request, plan, raw or b"", rewritten, as_sent, client, held.waited_s)


async def _unranked(
    request: web.Request, plan: SearchPlan, as_sent: EsRequest
) -> web.StreamResponse:
    """A search that is not reranked: ES's answer is streamed, and ES gets the client's
    request but for the sidecar's own ``rerank`` object."""
    outcome = Outcome("skipped", plan.skip_reason)
    if plan.rewrites_body and plan.body is not None:
        data = compact(plan.body)
        if data is None:
            return await forward(request, as_sent, Outcome("skipped", "unserializable_body"))
        return await forward(request, EsRequest.rewritten(request, data), outcome)
    return await forward(request, as_sent, outcome)


async def _rerank(
    request: web.Request,
    plan: SearchPlan,
    raw: bytes,
    req: EsRequest,
    as_sent: EsRequest,
    client: str,
    held_s: float,
) -> web.StreamResponse:
    responses = request.app[ENGINE].responses
    cache_key = ""
    if responses.enabled and plan.mode == "on":
        # Every identity and representation header is in the key (sidecar.rerank.identity).
        cache_key = responses.key(
            request.headers, request.method, request.rel_url.raw_path_qs, raw, plan.mode
        )
        hit = await cached_hit(request, cache_key)
        if hit is not None:
            return answer(request, hit, CACHED)

    try:
        es_resp = await request.app[ES].fetch(req)
    except (BufferFull, UpstreamResponseTooLarge):
        # Too large to hold, alone or with the answers held already: ES's answer to the
        # client's own request is streamed instead (a 502 ES would not give is never sent).
        return await forward(request, as_sent, Outcome("skipped", "memory"))
    try:
        return await _answer(request, plan, es_resp, as_sent, client, cache_key, held_s)
    finally:
        es_resp.release()


async def _answer(
    request: web.Request,
    plan: SearchPlan,
    es_resp: BufferedResponse,
    as_sent: EsRequest,
    client: str,
    cache_key: str,
    held_s: float,
) -> web.StreamResponse:
    step, responses = request.app[STEP], request.app[ENGINE].responses
    trace = trace_of(request)
    trace.es_s = es_resp.elapsed_s
    limit = request.app[CONFIG].es.max_response_bytes
    if es_resp.status != 200:
        if step.refused(plan, es_resp.status, es_resp.decoded(limit)):
            # The index's max_result_window is below the widened page: the client's own
            # page gets ES's own answer.
            return await forward(request, as_sent, Outcome("skipped", RESULT_WINDOW))
        if es_resp.status == 400:
            # A refusal of the rewritten body (its messages point at byte positions in it):
            # the client gets ES's refusal of its own bytes.
            return await forward(request, as_sent, ES_ERROR)
        # ES said no: its answer goes back untouched and the model is not called.
        return answer(request, es_resp.response(), ES_ERROR)
    with step.cpu.metered(client):
        answer_bytes = es_resp.decoded(limit)
    applied = await step.apply(plan, answer_bytes, trace.request_id, client, trace.waited_s, held_s)
    if isinstance(applied, Reask):
        return await forward(request, as_sent, applied.outcome)
    trace.model_s, trace.queue_s = applied.timings.model_s, applied.timings.queue_s
    with step.cpu.metered(client):
        out = es_resp.response(applied.body)  # compressed as ES compressed its own
    if cache_key and applied.outcome in (APPLIED, CACHED):
        annotate = request.app[CONFIG].rerank.annotate_field
        cached = _cacheable(out, applied, annotate)
        if cached is not None:
            responses.put(cache_key, cached)
    return answer(request, out, applied.outcome)


def _cacheable(resp: web.Response, applied: Applied, annotate: str | None) -> CachedResponse | None:
    """The response as a later cache hit serves it: its ``_rerank`` annotation says
    ``cached``, as its X-Rerank header will. It is kept uncompressed (the cache key does
    not tell clients that accept gzip from those that do not)."""
    data: bytes | None = applied.body
    body = applied.document
    status = body.get(annotate) if annotate and isinstance(body, dict) else None
    if annotate and isinstance(status, dict) and status.get("status") != CACHED.status:
        data = render({**body, annotate: {**status, "status": CACHED.status}}, applied.body)
    if data is None:
        return None
    headers = tuple((k, v) for k, v in resp.headers.items() if k.lower() != "content-encoding")
    return CachedResponse(resp.status, headers, data)
