"""Run a real sidecar app in-process on a real socket, with a given config."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
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


class TurnedClock:
    """A clock the test turns (``now += s``): handed to ``running_sidecar`` as the breaker's
    clock, it lets the reset timeout pass at once instead of waiting it out."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def own_tasks() -> set[asyncio.Task[Any]]:
    """The event loop's unfinished tasks (an in-process sidecar's handlers among them)."""
    return {t for t in asyncio.all_tasks() if not t.done()}


async def settled(baseline: set[asyncio.Task[Any]], timeout_s: float = 20.0) -> set[Any]:
    """Await every task started since ``baseline`` (and any they start) until none is left;
    what is still running after ``timeout_s`` (a task that never ends) is returned."""
    me = asyncio.current_task()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while extra := own_tasks() - baseline - {me}:
                await asyncio.wait(extra)
    return own_tasks() - baseline - {me}


@asynccontextmanager
async def running_sidecar(
    raw: dict[str, Any],
    wait_model: bool = True,
    *,
    breaker_clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[RunningSidecar]:
    config = build_config(raw)
    app = create_app(config, breaker_clock=breaker_clock)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        if wait_model:
            await until_ready(app)
        yield RunningSidecar(str(server.make_url("")).rstrip("/"), app, config)
    finally:
        await server.close()
