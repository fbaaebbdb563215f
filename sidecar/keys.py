"""Typed keys for the resources an application owns (created in cleanup_ctx)."""

from __future__ import annotations

from aiohttp import ClientSession, web

from sidecar.config import SidecarConfig
from sidecar.models.base import Scorer

CONFIG = web.AppKey("config", SidecarConfig)
ES_SESSION = web.AppKey("es_session", ClientSession)
SCORER = web.AppKey("scorer", Scorer)
