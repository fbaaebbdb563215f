"""Misbehaving clients: ones that go away mid-request, and slowloris ones that send their
headers or body a little at a time.

* A client that disconnects leaves nothing behind: no task, no queued model work, and no
  failure counted against the model (tests/rerank/test_fail_open.py checks the breaker for
  one client; here 40 at once, with the real model and with a remote one).
* Slow headers: aiohttp has no header-read timeout of its own, but it closes a connection
  that has not delivered a complete request when ``tuning.http.keepalive_timeout_s`` (the
  keep-alive timer, armed when the connection opens and after each response) fires. So a
  client that drips its headers is cut off after that long; it was one hour with aiohttp's
  default (3630 s) before the setting existed.
* Slow bodies: intercepted bodies must arrive within ``tuning.http.client_read_timeout_s``
  (408);
  pass-through bodies are streamed, and may not stall longer than that between two pieces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from devtools.fakes import FaultES, FaultModel
from sidecar.keys import ADMISSION, SCORER, SHADOW
from tests.conftest import ESTarget
from tests.support.apps import RunningSidecar, own_tasks, running_sidecar, settled
from tests.support.reliability import es_error, raw_exchange, raw_response
from tests.support.search import SAMPLE, base_config, multi_match

QUERY = "library card renew borrow books online account"


async def _disconnecting_clients(url: str, n: int, after_s: float, body: Any) -> None:
    async def one() -> None:
        async with aiohttp.ClientSession() as s:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(after_s):
                    await s.post(f"{url}/{SAMPLE}/_search", json=body)

    await asyncio.gather(*(one() for _ in range(n)))


@pytest.fixture
async def idle_closing_model() -> AsyncIterator[FaultModel]:
    """A rerank stand-in that closes a connection idle for 1 s. Left behind means by the
    sidecar: the stand-in's own tasks serving the connections the sidecar keeps idle in
    its pool (until the pool's keep-alive, 15 s) end soon, and are not counted as such."""
    async with FaultModel(idle_timeout_s=1.0) as model:
        yield model


async def test_disconnects_leave_no_tasks_and_no_breaker_failures(
    es: ESTarget, sample_index: str, idle_closing_model: FaultModel
) -> None:
    fault_model = idle_closing_model
    fault_model.mode, fault_model.delay_s = "slow", 0.4
    config = base_config(
        es.url,
        model={"name": fault_model.url},
        rerank={"budget_ms": 3000, "cache": {"enabled": False}},
        rollout={"trusted_clients": ["127.0.0.1/32"]},
    )
    async with running_sidecar(config) as sc:
        baseline = own_tasks()
        await _disconnecting_clients(sc.url, 40, 0.15, multi_match(QUERY))
        leftover = await settled(baseline)
        assert not leftover, leftover
        breaker = sc.app[ADMISSION].breaker
        assert (breaker.state, breaker.fail_counter) == ("closed", 0)
        assert not sc.app[SHADOW].tasks
        # Still serving, and the model is still trusted.
        fault_model.mode = "ok"
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{sc.url}/{SAMPLE}/_search", json=multi_match(QUERY)) as r,
        ):
            assert (r.status, r.headers["X-Rerank"]) == (200, "applied")


async def test_disconnects_drain_the_local_model_queue(
    es: ESTarget, bundled: RunningSidecar
) -> None:
    """With the real model: work of clients that went away leaves the worker's queue and
    the admission queue."""
    scorer, admission = bundled.app[SCORER], bundled.app[ADMISSION]
    baseline = own_tasks()
    bodies = [multi_match(f"{QUERY} disconnect {i}") for i in range(30)]
    await asyncio.gather(*(_disconnecting_clients(bundled.url, 1, 0.05, body) for body in bodies))
    leftover = await settled(baseline)
    assert not leftover, leftover
    assert scorer.queued_pairs == 0
    assert (admission.queue.waiting_pairs, admission.queue.in_flight) == (0, 0)
    assert admission.breaker.fail_counter == 0


def _slow_sidecar(fault_es: FaultES, fault_model: FaultModel, **http: Any) -> Any:
    config = base_config(fault_es.url, model={"name": fault_model.url}, tuning={"http": http})
    return running_sidecar(config, wait_model=False)


async def test_slow_headers_are_cut_off(fault_es: FaultES, fault_model: FaultModel) -> None:
    async with _slow_sidecar(fault_es, fault_model, keepalive_timeout_s=1.0) as sc:
        host, port = sc.url.removeprefix("http://").split(":")
        t0 = time.monotonic()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /_sidecar/health HTTP/1.1\r\nHost: x\r\n")
        closed_after = None
        for i in range(40):  # a header line every 0.1 s, never the blank line
            try:
                writer.write(b"X-Drip-%d: y\r\n" % i)
                await writer.drain()
            except ConnectionError:
                closed_after = time.monotonic() - t0
                break
            try:
                data = await asyncio.wait_for(reader.read(1), 0.1)
            except TimeoutError:
                continue
            if data == b"":
                closed_after = time.monotonic() - t0
                break
        writer.close()
        assert closed_after is not None, "a slow-header client held the connection for 4 s"
        assert closed_after >= 0.9, "not before the keep-alive timeout"
        # An idle connection that never sends anything is closed the same way (by the
        # sidecar: raw_exchange raises if it has to give up waiting first).
        assert await raw_exchange(sc.url, b"", read_timeout=30.0) == b""
        # And a normal client on a kept-alive connection is not disturbed.
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                async with s.get(f"{sc.url}/_sidecar/health") as r:
                    assert r.status == 200


def test_keepalive_timeout_is_finite_by_default() -> None:
    from sidecar.config import HttpTuning

    assert HttpTuning().keepalive_timeout_s <= 120


@pytest.mark.parametrize("path", ["/faults/_search", "/_msearch", "/_sidecar/v1/rerank"])
async def test_slow_body_on_intercepted_endpoints_is_408(
    fault_es: FaultES, fault_model: FaultModel, path: str
) -> None:
    async with _slow_sidecar(fault_es, fault_model, client_read_timeout_s=0.5) as sc:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\nConnection: close\r\n\r\n"
        ).encode()
        # The sidecar's own answer to the stalled body (raw_response would give up first
        # if it waited for the client instead).
        answer = await raw_response(sc.url, head + b'{"query":', read_timeout=30.0)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request_timeout_exception" in answer


async def test_slow_body_on_pass_through_is_408_and_frees_the_pool(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    """A stalled streamed body (a _bulk that stops moving) is ended after
    client_read_timeout_s instead of holding an ES connection from the pool forever."""
    async with _slow_sidecar(fault_es, fault_model, client_read_timeout_s=0.5) as sc:
        head = (
            b"POST /_bulk HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: 1000\r\nConnection: close\r\n\r\n"
        )
        stalled = [
            raw_response(sc.url, head + b'{"index":{}}\n', read_timeout=30.0) for _ in range(20)
        ]
        answers = await asyncio.gather(*stalled)
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"stalled" in answer
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{sc.url}/_bulk", data=b'{"index":{}}\n{"a":1}\n') as r:
                assert r.status == 200
            async with s.get(f"{sc.url}/_sidecar/health") as r:
                assert r.status == 200


async def test_a_moving_pass_through_body_may_take_longer_than_the_timeout(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    async with _slow_sidecar(fault_es, fault_model, client_read_timeout_s=0.5) as sc:

        async def body() -> Any:
            for _ in range(6):  # 1.5 s in all, never more than 0.25 s between pieces
                yield b'{"index":{}}\n{"a":1}\n'
                await asyncio.sleep(0.25)

        async with aiohttp.ClientSession() as s, s.post(f"{sc.url}/_bulk", data=body()) as r:
            assert r.status == 200


async def test_retry_never_resends_a_partly_streamed_body() -> None:
    """ES closes a connection after reading part of a streamed GET body (a pooled
    connection that died): the sidecar must not send the rest of the body again on a new
    connection as if it were the whole request (ES would answer a different question)."""
    received: list[bytes] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if not received:
            received.append(head + await reader.read(10))
            writer.close()  # first connection: drop it mid-body
            return
        received.append(head + await reader.read(65536))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = base_config(f"http://127.0.0.1:{port}", model={"name": "http://127.0.0.1:9/x"})
    try:
        async with running_sidecar(config, wait_model=False) as sc:

            async def gen() -> Any:
                for i in range(20):
                    yield b'{"query":{"term":{"f":"part-%d"}}}' % i if i == 0 else b" " * 100
                    await asyncio.sleep(0.01)

            async with (
                aiohttp.ClientSession() as s,
                s.get(f"{sc.url}/idx/_count", data=gen()) as r,
            ):
                status = r.status
                body = await r.json()
        assert status == 502, body
        es_error(body)
        assert len(received) == 1, "a partly sent streamed body was sent again"
    finally:
        server.close()
        await server.wait_closed()
