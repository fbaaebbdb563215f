"""Slow clients cannot exhaust the ES connections: searches have a pool of their own, the
readiness probe has its own connection, and a client that stops reading an answer or drips
its body is cut off once its transfer falls below the minimum rate."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp

from devtools.fakes import FaultES, FaultModel
from sidecar.keys import ES
from tests.support.apps import RunningSidecar, running_sidecar
from tests.support.search import base_config, multi_match

GRACE_S = 1.0


@contextlib.asynccontextmanager
async def _sidecar(fault_es: FaultES, fault_model: FaultModel) -> AsyncIterator[RunningSidecar]:
    config = base_config(
        fault_es.url,
        model={"name": fault_model.url},
        es={"max_connections": 2},
        tuning={
            "es": {"search_connections": 4},
            "http": {"transfer_grace_s": GRACE_S, "min_transfer_bytes_per_s": 100_000},
        },
    )
    async with running_sidecar(config, wait_model=False) as sc:
        yield sc


async def _never_reading(url: str, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a request for a large answer, then read nothing: the kernel buffers fill up.
    The writer is returned too: the connection lives as long as it does."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def _drain_until_closed(reader: asyncio.StreamReader, limit_s: float) -> int:
    got = 0
    async with asyncio.timeout(limit_s):
        while chunk := await reader.read(1 << 16):
            got += len(chunk)
    return got


async def test_searches_and_ready_are_served_while_pass_through_is_held(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    fault_es.mode, fault_es.only, fault_es.huge_bytes = "huge", "/big", 64 * 1024 * 1024
    async with _sidecar(fault_es, fault_model) as sc:
        # Two clients that never read hold both pass-through connections (max_connections 2).
        holders = [await _never_reading(sc.url, f"/big/{i}") for i in range(2)]
        for _ in range(3000):
            if fault_es.requests >= 2:
                break
            await asyncio.sleep(0.01)
        assert fault_es.requests >= 2, "both requests reached ES"
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{sc.url}/i/_search", json=multi_match("library card")) as r:
                assert r.status == 200 and json.loads(await r.read())["hits"]["hits"]
            async with s.get(f"{sc.url}/_sidecar/ready") as r:
                assert (await r.json())["es"]["reachable"] is True
        # They keep not reading for a while; the sidecar cuts them off (one write may take
        # transfer_grace_s at most), so reading now ends long before the answer would.
        await asyncio.sleep(3 * GRACE_S)
        for reader, writer in holders:
            got = await _drain_until_closed(reader, limit_s=60)
            assert got < fault_es.huge_bytes / 2
            writer.close()


async def test_a_client_that_stops_reading_frees_its_es_connection(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    fault_es.mode, fault_es.only, fault_es.huge_bytes = "huge", "/big", 64 * 1024 * 1024
    async with _sidecar(fault_es, fault_model) as sc:
        holders = [await _never_reading(sc.url, f"/big/{i}") for i in range(2)]
        await asyncio.sleep(3 * GRACE_S)  # the clients keep not reading
        for reader, writer in holders:
            got = await _drain_until_closed(reader, limit_s=60)
            assert got < fault_es.huge_bytes / 2
            writer.close()
        # Both pass-through connections are free again.
        async with aiohttp.ClientSession() as s, s.get(f"{sc.url}/_cat/indices") as r:
            assert r.status == 200


async def test_a_dripped_body_is_cut_off_with_an_es_shaped_408(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    async with _sidecar(fault_es, fault_model) as sc:
        host, port = sc.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /_bulk HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        answer = b""

        async def drip() -> None:
            # One byte every 50 ms: far below the minimum rate, but never a long pause.
            for _ in range(100_000):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(drip())
        try:
            async with asyncio.timeout(60):
                answer = await reader.read(4096)
        finally:
            dripping.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await dripping
            writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        assert json.loads(body)["error"]["type"] == "request_timeout_exception"


async def test_answers_held_for_reranking_are_bounded_in_bytes(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    config = base_config(
        fault_es.url,
        model={"name": fault_model.url},
        tuning={"es": {"max_buffered_bytes": 2048}},
    )
    async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:
        body = multi_match("library card", size=3)
        async with s.post(f"{sc.url}/i/_search", json=body) as r:
            answer = await r.json()
            assert (r.status, r.headers["X-Rerank"]) == (200, "skipped; reason=memory")
        # The client's own page, in ES order, streamed instead of held.
        assert len(answer["hits"]["hits"]) == 3
        assert sc.app[ES].buffered.held == 0
