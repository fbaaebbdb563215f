"""One client holds at most half of each connection pool to ES: four requests from one
address for large answers that are never read cannot keep another client's plain GET
waiting (real sockets; each client from its own loopback address)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp

from devtools.fakes import FaultES, FaultModel
from sidecar.keys import ES
from tests.support.apps import RunningSidecar, running_sidecar
from tests.support.search import base_config

HOLDER, OTHER = "127.0.0.2", "127.0.0.3"


@contextlib.asynccontextmanager
async def _sidecar(fault_es: FaultES, fault_model: FaultModel) -> AsyncIterator[RunningSidecar]:
    config = base_config(fault_es.url, model={"name": fault_model.url}, es={"max_connections": 4})
    async with running_sidecar(config, wait_model=False) as sc:
        yield sc


async def _never_reading(url: str, path: str) -> asyncio.StreamWriter:
    """From HOLDER: ask for a large answer, then read nothing (the kernel buffers fill)."""
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port), local_addr=(HOLDER, 0))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return writer


async def test_a_client_that_never_reads_holds_half_the_pool_at_most(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    fault_es.mode, fault_es.only, fault_es.huge_bytes = "huge", "/big", 64 * 1024 * 1024
    async with _sidecar(fault_es, fault_model) as sc:
        share = sc.app[ES].shares["passthrough"]
        assert share.cap == 2
        holders = [await _never_reading(sc.url, f"/big/{i}") for i in range(4)]
        # Two of the four reach ES; the other two wait for one of their client's own.
        await fault_es.requests_reached(2)
        assert share.held(f"ip:{HOLDER}") == 2
        connector = aiohttp.TCPConnector(local_addr=(OTHER, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as s,
            s.get(f"{sc.url}/_cluster/health") as r,
        ):
            assert r.status == 200, await r.text()
            assert json.loads(await r.read())["acknowledged"] is True
        assert fault_es.requests == 3, "the holder's other two still wait for its own"
        for writer in holders:
            writer.close()
