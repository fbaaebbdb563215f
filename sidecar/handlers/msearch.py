"""``_msearch``: each sub-search is rolled out and planned on its own by the rerank step;
ES answers them all at once; the step reranks the ones planned for it.

What ES receives is the client's payload byte for byte except the bodies the plans rewrite
(a ``rerank`` object removed, a page widened): every header line, blank line and untouched
body keeps its bytes. A body that cannot be rewritten faithfully (a repeated key, nesting
past what the sidecar writes) is sent as the client wrote it, so ES answers that search as
it would directly. ``filter_path`` is applied by the sidecar when any search is reranked;
an answer that cannot be given back as rewritten is asked for again with the client's
own payload.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from sidecar.errors import UpstreamResponseTooLarge
from sidecar.handlers.outcomes import answer, fair_key, forward
from sidecar.handlers.search import indices_of, other_format
from sidecar.http.body import (
    NdjsonLines,
    decode_body,
    has_duplicate_keys,
    parse_ndjson,
    read_body,
)
from sidecar.http.trace import trace_of
from sidecar.keys import CONFIG, ES, ROLLOUT, STEP
from sidecar.rerank.filter_path import FilterPath, parse_filter_path
from sidecar.rerank.outcome import Outcome, overall
from sidecar.rerank.plan import SearchPlan
from sidecar.rerank.render import compact
from sidecar.rerank.rollout import Client
from sidecar.rerank.step import CPU_SHARE, ES_ERROR, Reask
from sidecar.upstream import BufferFull, EsRequest

__all__ = ["handle_msearch", "parse_ndjson"]


def _header_indices(header: Any, path_index: str) -> str:
    if isinstance(header, dict):
        value = header.get("index")
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
    return path_index


async def handle_msearch(request: web.Request) -> web.StreamResponse:
    path_index = request.match_info.get("index", "")
    raw = await read_body(request)
    as_sent = EsRequest.passthrough(request, raw)
    if raw is None:
        return await forward(request, as_sent, Outcome("skipped", "no_body"))
    limit = request.app[CONFIG].server.max_body_bytes
    data = decode_body(raw, request.headers.get("Content-Encoding"), limit)
    if data is None:
        return await forward(request, as_sent, Outcome("skipped", "encoded_body"))
    rollout, step = request.app[ROLLOUT], request.app[STEP]
    client = rollout.client(request.remote, request.headers)
    fair = fair_key(client.addr)
    with step.cpu.metered(fair):
        payload = NdjsonLines.parse(data)
        if payload is None:
            return await forward(request, as_sent, Outcome("skipped", "unparsed_body"))
        plans, bodies, shape = _plan(request, path_index, payload, client)
    if not any(plan.rerank for plan in plans):
        return await _unranked(request, payload, plans, bodies, as_sent)

    budget_s = max(plan.settings.budget_s for plan in plans if plan.rerank)
    held = await step.hold(fair, budget_s)
    if held.whole_budget:
        # Nothing is left to rerank with: ES's answer to the searches as sent, streamed.
        plans, bodies, _ = _plan(request, path_index, payload, client, force_skip=CPU_SHARE)
        return await _unranked(request, payload, plans, bodies, as_sent)
    # The sidecar applies filter_path itself when it rewrites the answer.
    drop = ("filter_path",) if shape is not None else ()
    forwarded = EsRequest.rewritten(request, payload.replaced(bodies), drop) if bodies else as_sent
    try:
        es_resp = await request.app[ES].fetch(forwarded)
    except (BufferFull, UpstreamResponseTooLarge):
        # Too large to hold, alone or with the answers held already: ES's answer to the
        # client's own request is streamed instead (a 502 ES would not give is never sent).
        return await forward(request, as_sent, Outcome("skipped", "memory"))
    try:
        trace = trace_of(request)
        trace.es_s = es_resp.elapsed_s
        if es_resp.status != 200:
            return answer(request, es_resp.response(), ES_ERROR)
        es_limit = request.app[CONFIG].es.max_response_bytes
        with step.cpu.metered(fair):
            answer_bytes = es_resp.decoded(es_limit)
        applied = await step.apply_many(
            plans,
            answer_bytes,
            trace.request_id,
            filter_path=shape if drop else None,
            client=fair,
            waited_s=trace.waited_s,
            held_s=held.waited_s,
        )
        if isinstance(applied, Reask):
            return await forward(request, as_sent, applied.outcome)
        trace.model_s, trace.queue_s = applied.timings.model_s, applied.timings.queue_s
        with step.cpu.metered(fair):
            out = es_resp.response(applied.body)  # compressed as ES compressed its own
        return answer(request, out, applied.outcome)
    finally:
        es_resp.release()


async def _unranked(
    request: web.Request,
    payload: NdjsonLines,
    plans: list[SearchPlan],
    bodies: dict[int, bytes],
    as_sent: EsRequest,
) -> web.StreamResponse:
    """Nothing to rerank: ES's answer is streamed back, never held in memory."""
    forwarded = EsRequest.rewritten(request, payload.replaced(bodies)) if bodies else as_sent
    skipped = [Outcome("skipped", plan.skip_reason) for plan in plans]
    return await forward(request, forwarded, overall(skipped))


def _plan(
    request: web.Request,
    path_index: str,
    payload: NdjsonLines,
    client: Client,
    force_skip: str | None = None,
) -> tuple[list[SearchPlan], dict[int, bytes], FilterPath | None]:
    """Every sub-search planned (``force_skip``: none reranked, for that reason): (the
    plans, the bodies rewritten, by search, the client's filter_path)."""
    rollout, step = request.app[ROLLOUT], request.app[STEP]
    force = force_skip or ("format" if other_format(request) else None)
    raw_filter = request.rel_url.query.get("filter_path")
    shape = parse_filter_path(raw_filter) if raw_filter else None
    if shape is not None and not shape.wants_below(("responses", "hits", "hits")):
        force = force or "filter_path"  # the client does not want hits
    plans: list[SearchPlan] = []
    bodies: dict[int, bytes] = {}
    allowed, reranking = request.app[CONFIG].rerank.load.msearch_max_reranked, 0
    for i, (header, body) in enumerate(payload.pairs):
        index = _header_indices(header, path_index)
        mode = rollout.decide(client, indices_of(index)).mode
        # Past the cap a sub-search is not widened either: ES answers it as sent.
        capped = "msearch_limit" if reranking >= allowed else None
        plan = step.plan(body, {}, index, mode, force_skip=force or capped)
        reranking += plan.rerank
        if plan.rewrites_body and plan.body is not None:
            new = compact(plan.body)
            if new is None or has_duplicate_keys(payload.body_line(i)):
                # The client's own line: ES answers it as it would directly.
                reason = "unserializable_body" if new is None else "duplicate_keys"
                plan = replace(plan, skip_reason=reason, rewrites_body=False, body=None)
            else:
                bodies[i] = new
        plans.append(plan)
    return plans, bodies, shape
