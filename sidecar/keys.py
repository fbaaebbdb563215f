"""Typed keys for the resources an application owns (created in cleanup_ctx)."""

from __future__ import annotations

from aiohttp import web

from sidecar.config import SidecarConfig
from sidecar.models.base import Scorer
from sidecar.upstream import Upstream

CONFIG = web.AppKey("config", SidecarConfig)
UPSTREAM = web.AppKey("upstream", Upstream)
SCORER = web.AppKey("scorer", Scorer)
