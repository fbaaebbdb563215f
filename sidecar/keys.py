"""Typed keys for the resources an application owns (created in cleanup_ctx)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from sidecar.admission.controller import AdmissionController
from sidecar.config import SidecarConfig
from sidecar.lifecycle import Lifecycle
from sidecar.metrics import Metrics
from sidecar.rerank.engine import RerankEngine
from sidecar.rerank.rollout import Rollout
from sidecar.rerank.shadow import ShadowRunner
from sidecar.scoring.slot import ScorerSlot
from sidecar.search.service import SearchService
from sidecar.ubi.service import UbiService
from sidecar.upstream import EsClient

CONFIG = web.AppKey("config", SidecarConfig)
BREAKER_CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("breaker_clock")
ES = web.AppKey("es", EsClient)
SCORER = web.AppKey("scorer", ScorerSlot)
ADMISSION = web.AppKey("admission", AdmissionController)
ENGINE = web.AppKey("engine", RerankEngine)
ROLLOUT = web.AppKey("rollout", Rollout)
SHADOW = web.AppKey("shadow", ShadowRunner)
SEARCH = web.AppKey("search", SearchService)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
METRICS = web.AppKey("metrics", Metrics)
#: The UBI service; only with ``ubi.enabled``.
UBI = web.AppKey("ubi", UbiService)
