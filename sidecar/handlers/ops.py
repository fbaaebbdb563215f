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
    """Readiness: ES answers (any HTTP answer counts: a secured cluster says 401 to us) and
    the model is warm, or will not be soon: its load failed (it is retried) or it was
    refused. Then searches are served in ES order, and a probe that took the pod out of
    service would take search away with the model. During the first load: 503, unless
    ``model.ready_while_loading``."""
    es = request.app[ES]
    engine, admission = request.app[ENGINE], request.app[ADMISSION]
    es_ok = await es.reachable()
    slot = engine.scorer
    info = slot.info
    model_ok = engine.ready
    failures = slot.load_failures if isinstance(slot, ScorerSlot) else 0
    # The first load has ended: loaded (warm, refused by its self-test, or lost its worker
    # since), or failed and being retried; all but warm serve ES order.
    loaded = slot.scorer is not None if isinstance(slot, ScorerSlot) else True
    settled = loaded or failures > 0
    config = request.app[CONFIG]
    serving = es_ok and (settled or config.model.ready_while_loading)
    capacity, capacity_warning = _capacity(request)
    body = {
        "ready": serving,
        # Whether searches are reranked now (false: ES order, X-Rerank says why).
        "reranking": es_ok and model_ok,
        "es": {"url": public_url(str(es.base)), "reachable": es_ok},
        "model": {
            "name": public_name(info.name),
            "kind": info.kind,
            "source": info.source,
            "device": info.device,
            "dtype": info.dtype,
            "languages": list(info.languages),
            "warm": model_ok,
            # Why the model is not served (its start-up self-test failed, or it could not
            # be loaded and is being retried), or null.
            "refused": info.refused,
            "load_failures": failures,
            # How it is served that the operator should know (e.g. no instruction sent,
            # or a model too slow for the budget).
            "warnings": list(info.warnings) + ([capacity_warning] if capacity_warning else []),
            "capacity": capacity,
        },
        "breaker": admission.breaker.state,
    }
    ubi = request.app.get(UBI)
    if ubi is not None:
        # The query log: queued, written, and what was dropped and why (ES down, queue full).
        body["ubi"] = ubi.state()
    return json_response(body, status=200 if serving else 503)


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
