"""Application factory: ``create_app(config) -> web.Application``.

Shared resources are created and closed in ``cleanup_ctx`` and stored under typed
``web.AppKey``s (:mod:`sidecar.keys`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from sidecar.config import SidecarConfig
from sidecar.keys import CONFIG, UPSTREAM
from sidecar.middleware import error_middleware
from sidecar.routes import setup_routes
from sidecar.upstream import Upstream


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG].es
    session = Upstream.create_session(config)
    app[UPSTREAM] = Upstream(config, session)
    yield
    await session.close()


def create_app(config: SidecarConfig) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=config.server.max_body_bytes,
        handler_args={"auto_decompress": False},
    )
    app[CONFIG] = config
    app.cleanup_ctx.append(_upstream_ctx)
    setup_routes(app)
    return app
