"""Requests for the shared-state tests: searches on a replica or through the round-robin
front, readiness and admin stats, and waiting on an observable condition."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from devtools.round_robin import SERVED_BY
from tests.support.search import SAMPLE, multi_match

ADMIN_TOKEN = "shared-state-admin-token"
#: The replicas' window: every search here asks ES for 20 hits and reranks them.
WINDOW = 20


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any

    @property
    def rerank(self) -> str:
        return self.headers.get("X-Rerank", "")

    @property
    def served_by(self) -> str:
        return self.headers.get(SERVED_BY, "")

    @property
    def ids(self) -> list[str]:
        return [h["_id"] for h in self.body["hits"]["hits"]]

    @property
    def scores(self) -> list[float]:
        return [h["_score"] for h in self.body["hits"]["hits"]]


async def search(
    session: aiohttp.ClientSession,
    url: str,
    query: str,
    *,
    headers: dict[str, str] | None = None,
    page_from: int | None = None,
    **body: Any,
) -> Answer:
    """``page_from``: the body's ``from`` (a later page)."""
    if page_from is not None:
        body["from"] = page_from
    async with session.post(
        f"{url}/{SAMPLE}/_search", json=multi_match(query, **body), headers=headers
    ) as r:
        data = await r.read()
        return Answer(r.status, r.headers, json.loads(data) if data else None)


async def get_json(
    session: aiohttp.ClientSession, url: str, path: str, *, admin: bool = False
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if admin else None
    async with session.get(url + path, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def admin_post(session: aiohttp.ClientSession, url: str, path: str) -> Any:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with session.post(url + path, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def cache_stats(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    status, body = await get_json(session, url, "/_sidecar/admin/cache", admin=True)
    assert status == 200, body
    stats: dict[str, Any] = body
    return stats


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, within_s: float = 60.0
) -> None:
    """Until ``check()`` holds (polled), or fail saying ``what`` never happened."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {within_s:.0f}s")


async def shared_state(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    status, body = await get_json(session, url, "/_sidecar/ready")
    assert status == 200, body
    state: dict[str, Any] = body["shared"]
    return state


async def until_written(session: aiohttp.ClientSession, url: str, since: int) -> None:
    """Until the replica at ``url`` has written more than ``since`` entries to Redis and
    has none waiting: what it stored is there for the other replicas (writes go in the
    background, never on a search's path)."""

    async def written() -> bool:
        state = await shared_state(session, url)
        return state["written"] > since and state["queued_bytes"] == 0

    await eventually(written, f"{url}'s writes reach Redis")
