"""Typed keys for the resources an application owns (created in cleanup_ctx)."""

from __future__ import annotations

from aiohttp import web

from sidecar.config import SidecarConfig
from sidecar.lifecycle import Lifecycle
from sidecar.metrics import Metrics
from sidecar.rerank.engine import RerankEngine
from sidecar.rerank.rollout import Rollout
from sidecar.rerank.shadow import ShadowRunner
from sidecar.rerank.step import RerankStep
from sidecar.scoring.base import Scorer
from sidecar.upstream import EsClient

CONFIG = web.AppKey("config", SidecarConfig)
ES = web.AppKey("es", EsClient)
SCORER = web.AppKey("scorer", Scorer)
ENGINE = web.AppKey("engine", RerankEngine)
ROLLOUT = web.AppKey("rollout", Rollout)
SHADOW = web.AppKey("shadow", ShadowRunner)
STEP = web.AppKey("step", RerankStep)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
METRICS = web.AppKey("metrics", Metrics)
