"""AUTH from a secret file against a real redis-server with ``requirepass``: the right
password shares; a wrong one is refused by Redis, counted as ``refused``, and is a miss,
never an error. The password is in no state the sidecar shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.redis_proc import RedisServer
from sidecar.config import SharedConfig, SharedTuning
from sidecar.shared.store import SharedStore

PASSWORD = "r3dis-s3cret-pass"


@pytest.fixture(scope="module")
def locked(
    redis_server_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    with RedisServer.run(tmp_path_factory.mktemp("redis-auth"), password=PASSWORD) as server:
        yield server


def _store(server: RedisServer, password_file: Path) -> SharedStore:
    config = SharedConfig(url=server.url, password_file=password_file)
    return SharedStore(config, SharedTuning(timeout_ms=500, retry_s=30))


async def test_the_password_from_its_file_shares(locked: RedisServer, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    store = _store(locked, secret)
    await store.start()
    try:
        store.put("rerank-sidecar:v1:s:" + "ab" * 16, b"12345678", 60)
        key = "rerank-sidecar:v1:s:" + "ab" * 16
        for _ in range(200):  # the write goes in the background: until it has landed
            if store.state()["written"]:
                break
            await store.get(key)
        assert await store.get(key) == b"12345678"
        state = store.state()
        assert state["state"] == "up" and sum(state["errors"].values()) == 0
        assert PASSWORD not in json.dumps(state)
    finally:
        await store.close()


async def test_a_wrong_password_is_refused_counted_and_a_miss(
    locked: RedisServer, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("not-the-password", encoding="utf-8")
    store = _store(locked, secret)
    await store.start()
    try:
        assert await store.get("rerank-sidecar:v1:s:" + "cd" * 16) is None
        state = store.state()
        assert state["state"] == "down" and state["errors"]["refused"] >= 1, state
        assert "not-the-password" not in json.dumps(state)
    finally:
        await store.close()
