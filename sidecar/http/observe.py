"""Per-request observation: request id, one JSON access-log line, metrics, Server-Timing.

Authorization and request bodies never reach a log line or a metric label; query text is
hashed or truncated as ``logging.query`` says.
"""

from __future__ import annotations

import logging
import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from sidecar.deadline import now
from sidecar.http.trace import RequestTrace, trace_of
from sidecar.keys import CONFIG, ENGINE, METRICS
from sidecar.logs import redact_query
from sidecar.rerank.identity import CALLER

log = logging.getLogger("sidecar.access")

REQUEST_ID = "X-Request-Id"


def server_timing(trace: RequestTrace, total_s: float) -> str:
    parts = []
    for name, seconds in (("es", trace.es_s), ("queue", trace.queue_s), ("model", trace.model_s)):
        if seconds:
            parts.append(f"{name};dur={seconds * 1000:.2f}")
    parts.append(f"total;dur={total_s * 1000:.2f}")
    return ", ".join(parts)


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    trace = trace_of(request)
    response.headers[REQUEST_ID] = trace.request_id
    response.headers["Server-Timing"] = server_timing(trace, time.perf_counter() - trace.start)


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    trace = trace_of(request)
    trace.start = time.perf_counter()
    trace.arrived = now()
    incoming = request.headers.get(REQUEST_ID, "")
    trace.request_id = incoming[:64] if incoming.isprintable() and incoming else uuid.uuid4().hex
    engine = request.app.get(ENGINE)
    if engine is not None and engine.scores.scope == "identity":
        # The identity-scoped score cache keys each score by who asked (this task and the
        # shadow reranks it starts see the value; other requests never do).
        CALLER.set(engine.responses.identity.digest(request.headers))
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        total = time.perf_counter() - trace.start
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        outcome = trace.outcome.label if trace.outcome is not None else "none"
        metrics = request.app[METRICS]
        metrics.requests.labels(route, str(status), outcome).inc()
        metrics.stage_seconds.labels("total").observe(total)
        if trace.es_s:
            metrics.stage_seconds.labels("es").observe(trace.es_s)
        if trace.model_s:
            metrics.stage_seconds.labels("queue").observe(trace.queue_s)
            metrics.stage_seconds.labels("model").observe(trace.model_s)
        config = request.app[CONFIG]
        if config.server.access_log:
            log.info(
                "request",
                extra={
                    "request_id": trace.request_id,
                    "client": request.remote,
                    "method": request.method,
                    "path": request.path,
                    "route": route,
                    "index": trace.index or None,
                    "status": status,
                    "outcome": outcome,
                    "rule": trace.rule or None,
                    "query": redact_query(
                        trace.query, config.logging, config.tuning.limits.log_query_chars
                    ),
                    "es_ms": round(trace.es_s * 1000, 2),
                    "queue_ms": round(trace.queue_s * 1000, 2),
                    "model_ms": round(trace.model_s * 1000, 2),
                    "total_ms": round(total * 1000, 2),
                },
            )
