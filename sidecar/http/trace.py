"""Per-request facts gathered on the way (for logs, metrics and Server-Timing)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from sidecar.rerank.outcome import Outcome


@dataclass
class RequestTrace:
    request_id: str = ""
    #: time.perf_counter() when the request arrived (0: not observed).
    start: float = 0.0
    #: The same on the deadline's clock (``sidecar.deadline.now``).
    arrived: float = 0.0
    rule: str = ""
    #: The query text the reranker used (logged only as a hash or prefix, by config).
    query: str = ""
    #: What happened to the search (None: not a search, or it failed before ES answered).
    outcome: Outcome | None = None
    index: str = ""
    es_s: float = 0.0
    queue_s: float = 0.0
    model_s: float = 0.0

    @property
    def waited_s(self) -> float:
        """Seconds since the request arrived (0 when its arrival was not observed)."""
        return time.perf_counter() - self.start if self.start else 0.0


TRACE = web.RequestKey("trace", RequestTrace)


def trace_of(request: web.Request) -> RequestTrace:
    trace = request.get(TRACE)
    if trace is None:
        trace = RequestTrace()
        request[TRACE] = trace
    return trace
