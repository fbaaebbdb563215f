"""Liveness, readiness, metrics and the OpenAPI document of the sidecar's own endpoints."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.config import public_name, public_url
from sidecar.errors import NotFound
from sidecar.jsonutil import json_response
from sidecar.keys import ADMISSION, CONFIG, ENGINE, ES, METRICS, UBI
from sidecar.scoring.slot import ScorerSlot


async def health(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP. Never depends on ES or the model."""
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: the sidecar can answer searches, which is ES answering (any HTTP answer
    counts: a secured cluster says 401 to us). Nothing else: while the model loads, is
    retried or was refused, searches are answered in ES order, which is correct, so the
    model's state is a field of its own (``model.state``, and a metric), never a reason to
    take the replica out of service; nor is the shared store (``shared``), which searches
    never depend on."""
    es = request.app[ES]
    engine, admission = request.app[ENGINE], request.app[ADMISSION]
    es_ok = await es.reachable()
    slot = engine.scorer
    info = slot.info
    capacity, capacity_warning = _capacity(request)
    body = {
        "ready": es_ok,
        # Whether searches are reranked now (false: ES order, X-Rerank says why).
        "reranking": es_ok and engine.ready,
        "es": {"url": public_url(str(es.base)), "reachable": es_ok},
        "model": {
            "name": public_name(info.name),
            "state": engine.model_state,
            "kind": info.kind,
            "source": info.source,
            "device": info.device,
            "dtype": info.dtype,
            "languages": list(info.languages),
            "warm": engine.ready,
            # Why the model is not served (its start-up self-test failed, or it could not
            # be loaded and is being retried), or null.
            "refused": info.refused,
            "load_failures": slot.load_failures if isinstance(slot, ScorerSlot) else 0,
            # How it is served that the operator should know (e.g. no instruction sent,
            # or a model too slow for the budget).
            "warnings": list(info.warnings) + ([capacity_warning] if capacity_warning else []),
            "capacity": capacity,
        },
        "breaker": admission.breaker.state,
        "shared": engine.shared.state() if engine.shared is not None else {"backend": "memory"},
    }
    ubi = request.app.get(UBI)
    if ubi is not None:
        # The query log: queued, written, and what was dropped and why (ES down, queue full).
        body["ubi"] = ubi.state()
    return json_response(body, status=200 if es_ok else 503)


def _capacity(request: web.Request) -> tuple[dict[str, Any] | None, str | None]:
    """What the model can do for a search with the default budget and window, learned
    from its passes (the warm-up's first), and the warning when that is too little."""
    rerank = request.app[CONFIG].rerank
    capacity = request.app[ADMISSION].meter.capacity(
        rerank.budget_ms / 1000, rerank.window, rerank.min_window
    )
    if capacity is None:
        return None, None
    figures = {
        "pairs_per_s": round(capacity.pairs_per_s, 2),
        "window_in_budget": capacity.k,
        "searches_per_s": round(capacity.searches_per_s, 3),
        "budget_ms": rerank.budget_ms,
        "window": rerank.window,
    }
    return figures, capacity.warning()


async def not_found(request: web.Request) -> web.Response:
    """A path under /_sidecar/ that the sidecar does not serve (it never goes to ES)."""
    raise NotFound(f"no handler found for uri [{request.path}] and method [{request.method}]")


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


_OPENAPI = files("sidecar").joinpath("openapi.yaml")


async def openapi(request: web.Request) -> web.Response:
    """``sidecar/openapi.yaml``: the sidecar's own endpoints, for API docs and fuzzing."""
    try:
        body = _OPENAPI.read_bytes()
    except FileNotFoundError as exc:  # an install that did not ship the package data
        raise NotFound("openapi.yaml is not installed with this sidecar") from exc
    return web.Response(body=body, content_type="application/yaml")
