"""Per-request facts gathered on the way (for logs, metrics and Server-Timing)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from sidecar.rerank.outcome import Outcome


@dataclass
class RequestTrace:
    request_id: str = ""
    start: float = 0.0
    rule: str = ""
    #: The query text the reranker used (logged only as a hash or prefix, by config).
    query: str = ""
    #: What happened to the search (None: not a search, or it failed before ES answered).
    outcome: Outcome | None = None
    index: str = ""
    es_s: float = 0.0
    queue_s: float = 0.0
    model_s: float = 0.0


TRACE = web.RequestKey("trace", RequestTrace)


def trace_of(request: web.Request) -> RequestTrace:
    trace = request.get(TRACE)
    if trace is None:
        trace = RequestTrace()
        request[TRACE] = trace
    return trace
