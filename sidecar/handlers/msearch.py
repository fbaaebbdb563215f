"""``_msearch``: each sub-search is rolled out and planned on its own by the rerank step;
ES answers them all at once; the step reranks the ones planned for it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDict

from sidecar.handlers.outcomes import answer, forward
from sidecar.handlers.search import indices_of
from sidecar.http.body import decode_body, parse_ndjson, read_body
from sidecar.http.trace import trace_of
from sidecar.jsonutil import dumps
from sidecar.keys import CONFIG, ES, ROLLOUT, STEP
from sidecar.rerank.outcome import Outcome, overall
from sidecar.rerank.plan import RERANK_KEY
from sidecar.rerank.step import ES_ERROR
from sidecar.upstream import EsRequest


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
    if raw is None:
        return await forward(
            request, EsRequest.passthrough(request, raw), Outcome("skipped", "no_body")
        )
    limit = request.app[CONFIG].server.max_body_bytes
    data = decode_body(raw, request.headers.get("Content-Encoding"), limit)
    if data is None:
        return await forward(
            request, EsRequest.passthrough(request, raw), Outcome("skipped", "encoded_body")
        )
    pairs = parse_ndjson(data)
    if pairs is None:
        return await forward(
            request, EsRequest.passthrough(request, raw), Outcome("skipped", "unparsed_body")
        )

    rollout, step = request.app[ROLLOUT], request.app[STEP]
    client = rollout.client(request.remote, request.headers)
    plans = []
    lines: list[bytes] = []
    for header, body in pairs:
        index = _header_indices(header, path_index)
        mode = rollout.decide(client, indices_of(index)).mode
        plan = step.plan(body, MultiDict(), index, mode)
        plans.append(plan)
        lines.append(dumps(header))
        lines.append(dumps(plan.body if plan.body is not None else body))
    # Only a body that lost a ``rerank`` object or was widened is written anew: any other
    # reaches ES as the client's own bytes.
    rewritten = any(isinstance(body, dict) and RERANK_KEY in body for _, body in pairs)
    forwarded = (
        EsRequest.rewritten(request, b"\n".join(lines) + b"\n")
        if rewritten or any(plan.rerank for plan in plans)
        else EsRequest.passthrough(request, raw)
    )
    if not any(plan.rerank for plan in plans):
        # Nothing to rerank: ES's answer is streamed back, never held in memory.
        skipped = [Outcome("skipped", plan.skip_reason) for plan in plans]
        return await forward(request, forwarded, overall(skipped))

    es_resp = await request.app[ES].fetch(forwarded)
    trace = trace_of(request)
    trace.es_s = es_resp.elapsed_s
    if es_resp.status != 200:
        return answer(request, es_resp.response(), ES_ERROR)
    es_limit = request.app[CONFIG].es.max_response_bytes
    applied = await step.apply_many(plans, es_resp.decoded(es_limit), trace.request_id)
    trace.model_s, trace.queue_s = applied.timings.model_s, applied.timings.queue_s
    return answer(request, es_resp.response(applied.body), applied.outcome)
