"""``_msearch``: each sub-search is planned, rolled out and reranked on its own; the
sub-searches that are reranked are scored concurrently, so the batching worker coalesces
them into shared forward passes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDict

from sidecar.errors import UpstreamBadResponse
from sidecar.handlers.passthrough import buffered_to_response
from sidecar.http.body import read_body
from sidecar.jsonutil import dumps, loads
from sidecar.keys import CONFIG, ENGINE, ROLLOUT, SHADOW, UPSTREAM
from sidecar.rerank.engine import Outcome, ScoredWindow
from sidecar.rerank.plan import SearchPlan, plan_search
from sidecar.rerank.respond import hits_of, rewrite
from sidecar.search_io import (
    decode_body,
    forward,
    score_options,
    status_body,
    upstream_headers,
    url_without,
    with_header,
)


@dataclass
class SubSearch:
    header: Any
    body: Any
    plan: SearchPlan | None
    mode: str


def _header_indices(header: Any, path_index: str) -> str:
    if isinstance(header, dict):
        value = header.get("index")
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
    return path_index


def parse_ndjson(data: bytes) -> list[tuple[Any, Any]] | None:
    """Header/body pairs, or None when the payload is not well-formed NDJSON pairs."""
    lines = [line for line in data.split(b"\n") if line.strip()]
    if len(lines) % 2:
        return None
    try:
        parsed = [loads(line) for line in lines]
    except ValueError:
        return None
    return [(parsed[i], parsed[i + 1]) for i in range(0, len(parsed), 2)]


def _overall(outcomes: list[Outcome]) -> Outcome:
    for status in ("applied", "cached", "shadow", "fallback"):
        for o in outcomes:
            if o.status == status:
                return o
    return outcomes[0] if outcomes else Outcome("skipped", "no_searches")


async def handle_msearch(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    engine = request.app[ENGINE]
    rollout = request.app[ROLLOUT]
    path_index = request.match_info.get("index", "")
    raw = await read_body(request)
    if raw is None:
        return await forward(request, raw, Outcome("skipped", "no_body"))
    data = decode_body(raw, request.headers.get("Content-Encoding"), config.server.max_body_bytes)
    if data is None:
        return await forward(request, raw, Outcome("skipped", "encoded_body"))
    pairs = parse_ndjson(data)
    if pairs is None:
        return await forward(request, raw, Outcome("skipped", "unparsed_body"))

    subs: list[SubSearch] = []
    for header, body in pairs:
        index = _header_indices(header, path_index)
        decision = rollout.decide(
            request.remote,
            request.headers.get("X-Forwarded-For"),
            request.headers.get(rollout.config.override_header),
            [i for i in index.split(",") if i],
        )
        plan = plan_search(body, MultiDict(), config.rerank, engine.docs, index)
        if decision.mode == "off" and plan.rerank:
            plan.skip_reason = "rollout_off"
        subs.append(SubSearch(header, body, plan, decision.mode))

    lines: list[bytes] = []
    for sub in subs:
        assert sub.plan is not None
        lines.append(dumps(sub.header))
        lines.append(dumps(sub.plan.body if sub.plan.body is not None else sub.body))
    if not any(sub.plan is not None and sub.plan.rerank for sub in subs):
        # Nothing to rerank: ES's answer is streamed back, never held in memory.
        skipped = [Outcome("skipped", s.plan.skip_reason if s.plan else None) for s in subs]
        return await forward(request, b"\n".join(lines) + b"\n", _overall(skipped), rewritten=True)
    upstream = request.app[UPSTREAM]
    headers = upstream_headers(request, body_rewritten=True)
    headers["Content-Type"] = request.headers.get("Content-Type", "application/x-ndjson")
    es_resp = await upstream.fetch(
        request.method,
        url_without(request, upstream.base, ()),
        headers,
        b"\n".join(lines) + b"\n",
    )
    if es_resp.status != 200:
        return with_header(buffered_to_response(es_resp), Outcome("skipped", "es_error"))
    try:
        body = loads(es_resp.body)
    except ValueError as exc:
        raise UpstreamBadResponse(
            "Elasticsearch returned an _msearch response that is not valid JSON"
        ) from exc
    responses = body.get("responses") if isinstance(body, dict) else None
    if not isinstance(responses, list) or len(responses) != len(subs):
        raise UpstreamBadResponse("Elasticsearch returned an unexpected _msearch response")

    async def one(sub: SubSearch, resp: Any) -> Outcome:
        plan = sub.plan
        assert plan is not None
        if not plan.rerank:
            return Outcome("skipped", plan.skip_reason)
        hits = hits_of(resp)
        if hits is None or resp.get("status", 200) != 200:
            return Outcome("skipped", "es_error")
        opts = score_options(engine, plan.index_hint)
        if sub.mode == "shadow":
            request.app[SHADOW].submit(engine, plan, hits[: plan.window], "")
            outcome = Outcome("shadow")
            rewrite(resp, plan, None, opts, status_body(outcome, engine, None))
            return outcome
        scored: ScoredWindow = await engine.score_hits(plan, hits[: plan.window])
        rewrite(resp, plan, scored.scores, opts, status_body(scored.outcome, engine, scored))
        return scored.outcome

    outcomes = list(
        await asyncio.gather(*(one(s, r) for s, r in zip(subs, responses, strict=True)))
    )
    out = buffered_to_response(es_resp, body=dumps(body))
    return with_header(out, _overall(outcomes))
