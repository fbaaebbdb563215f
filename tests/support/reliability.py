"""Helpers for the reliability suite (tests/reliability): fault servers as fixtures, a real
sidecar process started without blocking the event loop, raw-socket clients, log capture."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp

from devtools.clients import parse_metrics
from es_integration.sidecar_proc import SidecarProcess

SECRET = "Basic c2VjcmV0LXVzZXI6aHVudGVyMg=="  # secret-user:hunter2
SECRET_PARTS = ("c2VjcmV0LXVzZXI6aHVudGVyMg", "hunter2")


@contextlib.asynccontextmanager
async def sidecar_process(
    es_url: str,
    log_path: Path,
    *,
    model: str,
    config: dict[str, Any] | None = None,
    wait_ready: bool = True,
) -> AsyncIterator[SidecarProcess]:
    """``rerank-sidecar serve`` as a child process; started in a thread so that fault
    servers running on this event loop keep answering while it starts."""
    proc = await asyncio.to_thread(
        SidecarProcess.start,
        es_url,
        log_path=log_path,
        model=model,
        config=config,
        wait_ready=wait_ready,
    )
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


def overrides(**values: Any) -> dict[str, Any]:
    """``overrides(rerank__budget_ms=300)`` -> ``{"rerank": {"budget_ms": 300}}``."""
    tree: dict[str, Any] = {}
    for key, value in values.items():
        *sections, name = key.split("__")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return tree


async def metrics(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with session.get(f"{base}/_sidecar/metrics") as resp:
        return parse_metrics(await resp.text())


async def breaker_not_open(session: aiohttp.ClientSession, base: str, limit_s: float = 30) -> str:
    """Until a sidecar process's breaker is past its reset timeout (``/_sidecar/ready`` says
    ``half-open`` or ``closed``, not ``open``): a bounded poll of what only the process can
    tell, never a sleep as long as the reset timeout. Returns the state seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        async with session.get(f"{base}/_sidecar/ready") as resp:
            state = str((await resp.json())["breaker"])
        if state != "open":
            return state
        if loop.time() > deadline:
            raise AssertionError(f"the breaker was still open after {limit_s:g}s")
        await asyncio.sleep(0.02)


async def raw_exchange(url: str, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(read_timeout):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def raw_response(url: str, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; read one response (head and Content-Length
    body) without waiting for the server to close the connection."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(read_timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return head + await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def es_error(body: Any) -> tuple[str, str]:
    """(type, reason) of an ES-shaped error body; asserts the shape."""
    assert isinstance(body, dict), body
    assert isinstance(body.get("status"), int), body
    err = body["error"]
    assert isinstance(err["type"], str) and err["type"], body
    assert isinstance(err["reason"], str) and err["reason"], body
    return err["type"], err["reason"]


class LogCapture(logging.Handler):
    """Every record of every logger, formatted with its extra fields and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = json.dumps(vars(record), default=str)
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def capture_all_logs() -> Iterator[LogCapture]:
    handler = LogCapture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
