"""Redis is never a dependency of search: two replicas sharing a real redis-server behind
nginx round robin keep answering every search while Redis is stopped, paused
(``DEBUG SLEEP``) or full (``maxmemory`` with ``noeviction``). They stay ready, count the
outage in ``/_sidecar/ready``, and share again by themselves once Redis is back: a search
scored on one replica is then served ``cached`` by the other.

Each phase moves on by what the replicas say (their shared state in ``/_sidecar/ready``),
never by time; a background load of searches through the front runs across all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from devtools.redis_proc import RedisServer
from devtools.round_robin import RoundRobin
from es_integration.sidecar_proc import SidecarProcess
from tests.conftest import ESTarget
from tests.shared.conftest import replica_config, start_replicas
from tests.shared.support import cache_stats, eventually, get_json, search

TOPICS = (
    "renewing a library card",
    "interlibrary loan",
    "opening hours on holidays",
    "printing from a laptop",
    "borrowing an e-book",
    "rare manuscripts reading room",
)


@dataclass
class Pair:
    replicas: list[SidecarProcess]
    front: RoundRobin
    redis: RedisServer


@pytest.fixture(scope="module")
def pair(
    es: ESTarget,
    sample_index: str,
    redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pair]:
    logs = tmp_path_factory.mktemp("outage")
    # A short first wait after a failure, so that sharing resumes within a test's time.
    config = replica_config(es.url, redis.url, tuning={"shared": {"retry_s": 0.1}})
    replicas = start_replicas(es.url, logs, [config, config])
    with contextlib.ExitStack() as stack:
        for replica in replicas:
            stack.callback(replica.stop)
        front = stack.enter_context(RoundRobin.run(logs / "nginx", [r.url for r in replicas]))
        yield Pair(replicas, front, redis)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@dataclass
class Load:
    """Searches through the front, one after another per worker, until stopped: repeats
    (cache hits) and new queries (the model and writes to Redis) mixed."""

    statuses: Counter[int] = field(default_factory=Counter)
    headers: Counter[str] = field(default_factory=Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, session: aiohttp.ClientSession, url: str, worker: int) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            query = f"{TOPICS[n % len(TOPICS)]} {worker}-{n // 3}"
            answer = await search(session, url, query)
            self.statuses[answer.status] += 1
            self.headers[answer.rerank.split(";")[0]] += 1


@contextlib.asynccontextmanager
async def load(session: aiohttp.ClientSession, url: str) -> AsyncIterator[Load]:
    running = Load()
    tasks = [asyncio.create_task(running.run(session, url, w)) for w in range(4)]
    try:
        yield running
    finally:
        running.stop.set()
        await asyncio.gather(*tasks)


async def _shared_states(session: aiohttp.ClientSession, pair: Pair) -> list[dict[str, Any]]:
    states = []
    for replica in pair.replicas:
        status, body = await get_json(session, replica.url, "/_sidecar/ready")
        assert status == 200 and body["ready"], body  # ready through every phase
        states.append(body["shared"])
    return states


async def _until(session: aiohttp.ClientSession, pair: Pair, state: str, what: str) -> None:
    async def every_replica() -> bool:
        return all(s["state"] == state for s in await _shared_states(session, pair))

    await eventually(every_replica, what)


async def _shares_again(session: aiohttp.ClientSession, pair: Pair, tag: str) -> None:
    """A search scored on the first replica is served from Redis by the second (a search
    on each replica first lets each probe Redis and find it back)."""
    a, b = pair.replicas
    n = itertools.count()

    async def shared() -> bool:
        query = f"how long may I keep a borrowed book {tag} {next(n)}"
        scored = await search(session, a.url, query)
        before = (await cache_stats(session, b.url))["scores"]["shared_hits"]
        again = await search(session, b.url, query)
        after = (await cache_stats(session, b.url))["scores"]["shared_hits"]
        assert scored.status == again.status == 200
        return again.rerank == "cached" and after > before and again.ids == scored.ids

    await eventually(shared, f"sharing resumes after {tag}")


async def test_redis_stopped_paused_or_full_fails_no_search_and_sharing_resumes(
    pair: Pair, session: aiohttp.ClientSession
) -> None:
    await _until(session, pair, "up", "Redis answers at the start")
    async with load(session, pair.front.url) as running:
        # Stopped: connections refused.
        pair.redis.stop()
        await _until(session, pair, "down", "the replicas see Redis stopped")
        pair.redis.start()
        await _shares_again(session, pair, "a restart")

        # Paused: Redis holds every call past its timeout.
        sleeper = pair.redis.pause(3)
        await _until(session, pair, "down", "the replicas see Redis paused")
        await asyncio.to_thread(sleeper.join, 30)
        await _shares_again(session, pair, "a pause")

        # Full: writes refused with OOM, reads still answered.
        pair.redis.fill()
        await _until(session, pair, "full", "the replicas see Redis full")
        pair.redis.unfill()
        await _shares_again(session, pair, "a full Redis")
    assert set(running.statuses) == {200}, running.statuses
    assert running.statuses[200] > 0 and running.headers["applied"] > 0, running.headers
    states = await _shared_states(session, pair)
    for state in states:
        assert state["state"] == "up"
        # The outage was counted, by kind.
        assert state["errors"]["unavailable"] > 0, state
        assert state["errors"]["timeout"] > 0, state
        assert state["errors"]["full"] > 0, state
