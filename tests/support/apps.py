"""Run a real sidecar app in-process on a real socket, with a given config."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.app import create_app
from sidecar.config import SidecarConfig, build_config
from sidecar.keys import ENGINE


@dataclass
class RunningSidecar:
    url: str
    app: web.Application
    config: SidecarConfig


async def until_ready(app: web.Application) -> None:
    """Wait until the started app's model is loaded and warm (it loads in the background):
    the engine says so (a signal, not a poll); a minute at most."""
    try:
        async with asyncio.timeout(60):
            await app[ENGINE].warmed.wait()
    except TimeoutError:
        raise AssertionError("the model did not become ready") from None
    assert app[ENGINE].ready


@asynccontextmanager
async def running_sidecar(
    raw: dict[str, Any], wait_model: bool = True
) -> AsyncIterator[RunningSidecar]:
    config = build_config(raw)
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        if wait_model:
            await until_ready(app)
        yield RunningSidecar(str(server.make_url("")).rstrip("/"), app, config)
    finally:
        await server.close()
