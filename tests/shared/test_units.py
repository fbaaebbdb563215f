"""The shared store's parts on their own: the URL rules (no credential in it, none echoed),
the gate that leaves a failing Redis alone and lets one probe through, what Redis holds
(an order, a response) read back exactly and anything else refused, and a Redis that is
not there: a miss at once, counted, never an error.
"""

from __future__ import annotations

import time

import pytest

from es_integration.local_es import free_port
from sidecar.config import SharedConfig, SharedTuning, build_config
from sidecar.errors import ConfigError
from sidecar.reasons import Reason
from sidecar.rerank.cache import CachedResponse, decode_score, encode_score
from sidecar.rerank.pages import ServedOrder
from sidecar.shared.store import MAX_BACKOFF_S, Gate, SharedStore


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://rerank:s3cretpw@cache:6379/0", "must not carry credentials"),
        ("http://cache:6379", "redis:// or rediss://"),
        ("redis://cache:6379/zero", "database number"),
        ("redis://cache:6379/0?password=s3cretpw", "query string"),
    ],
)
def test_a_url_that_cannot_be_used_is_refused_without_echoing_a_secret(url: str, said: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"shared": {"url": url}})
    assert said in str(info.value) and "s3cretpw" not in str(info.value)


def test_ca_file_needs_tls(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="rediss://"):
        build_config({"shared": {"url": "redis://cache:6379/0", "ca_file": __file__}})
    assert build_config({"shared": {"url": "rediss://cache:6379/0", "ca_file": __file__}})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_gate_leaves_redis_alone_doubling_then_lets_one_probe_through() -> None:
    clock = Clock()
    gate = Gate(1.0, clock)
    assert gate.open(write=False) and gate.state == "up"
    assert gate.failed("unavailable") and gate.state == "down"
    assert not gate.open(write=False) and not gate.open(write=True)
    clock.now += 1.0
    assert gate.open(write=False)  # the probe
    assert not gate.open(write=False), "one probe at a time"
    assert not gate.failed("timeout")  # still down: the wait doubles
    assert gate.backoff_s == 2.0
    for _ in range(10):
        clock.now += gate.backoff_s
        assert gate.open(write=True)
        gate.failed("timeout")
    assert gate.backoff_s == MAX_BACKOFF_S
    clock.now += gate.backoff_s
    assert gate.open(write=False) and gate.ok(write=False) and gate.state == "up"


def test_a_full_redis_is_still_read_and_its_writes_wait() -> None:
    clock = Clock()
    gate = Gate(1.0, clock)
    gate.failed("full")
    assert gate.state == "full"
    assert gate.open(write=False) and not gate.ok(write=False), "a read proves nothing"
    assert not gate.open(write=True)
    clock.now += 1.0
    assert gate.open(write=True) and gate.ok(write=True) and gate.state == "up"


def test_what_redis_holds_reads_back_exactly_and_garbage_is_refused() -> None:
    order = ServedOrder(b"w" * 16, 20, (0.5, -1.25, 3.0))
    assert ServedOrder.decode(order.encode()) == order
    es_order = ServedOrder(b"w" * 16, 20, (), Reason.BUDGET)
    assert ServedOrder.decode(es_order.encode()) == es_order
    for bad in (None, b"", b"\x02" + order.encode()[1:], order.encode()[:-3], b"x" * 40):
        assert ServedOrder.decode(bad) is None
    response = CachedResponse(200, (("content-type", "application/json"),), b'{"a":\n1}')
    assert CachedResponse.decode(response.encode()) == response
    assert CachedResponse.decode(b"not json\n{}") is None
    assert decode_score(encode_score(-2.5)) == -2.5
    assert decode_score(b"\x00" * 4) is None and decode_score(encode_score(float("nan"))) is None


async def test_a_redis_that_is_not_there_is_a_miss_at_once_and_counted() -> None:
    config = SharedConfig(url=f"redis://127.0.0.1:{free_port()}/0")
    store = SharedStore(config, SharedTuning(timeout_ms=200, retry_s=30))
    await store.start()
    try:
        t0 = time.monotonic()
        assert await store.get_many(["a", "b"]) is None
        assert time.monotonic() - t0 < 0.5
        state = store.state()
        assert state["state"] == "down" and state["errors"]["unavailable"] >= 1
        # Left alone now: writes are dropped and counted, never queued without bound.
        store.put_many([("k", b"v")], 60)
        assert store.state()["dropped"]["unavailable"] >= 1
        assert store.state()["queued_bytes"] == 0
    finally:
        await store.close()
