"""The demo's evidence loop: simulated users search the sample corpus through the sidecar in
three cohorts, click, and the UBI report says whether reranking helped.

The cohorts are what an operator would roll out by address range (one faculty, one team):
``127.0.1.0/24`` is served reranked (``on``), ``127.0.2.0/24`` ES's own order (``off``) and
``127.0.3.0/24`` both interleaved (``interleave``). Each simulated user has an address of
her own in her cohort's range (Linux answers on all of 127.0.0.0/8), searches one of the
judged sample queries with ``ext.ubi`` as a UBI frontend does, reads the page by the cascade
click model (:mod:`es_integration.clicks`; a hit is relevant when the judged set says so)
and sends her clicks to ``/_sidecar/ubi/events``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from es_integration.clicks import DEMO_USERS, CascadeClicks

#: (mode, the address range the rollout rule names, the prefix users' addresses are taken in).
COHORTS = (
    ("on", "127.0.1.0/24", "127.0.1."),
    ("off", "127.0.2.0/24", "127.0.2."),
    ("interleave", "127.0.3.0/24", "127.0.3."),
)
FIELDS = ["title^2", "body", "subjects", "text"]
PAGE = 10


def demo_config(token: str) -> dict[str, Any]:
    """The sidecar settings of the loop: UBI on, one rule per cohort, an admin token."""
    rules = [
        {"name": f"cohort-{mode}", "clients": [cidr], "mode": mode} for mode, cidr, _ in COHORTS
    ]
    return {
        "ubi": {"enabled": True, "application": "demo"},
        "admin": {"token": token},
        "rollout": {"default": "on", "rules": rules},
    }


@dataclass(frozen=True)
class Judged:
    query: str
    relevant: frozenset[str]


@dataclass
class Tally:
    searches: int = 0
    clicks: int = 0
    errors: int = 0


def judged_queries(lines: list[str]) -> list[Judged]:
    out = []
    for line in lines:
        if line.strip():
            item = json.loads(line)
            if item.get("relevant"):
                out.append(Judged(item["query"], frozenset(item["relevant"])))
    return out


async def _user(
    sidecar: str,
    index: str,
    address: str,
    judged: Judged,
    model: CascadeClicks,
    rng: random.Random,
    tally: Tally,
) -> None:
    """One search and its clicks, from ``address``."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        query_id = uuid.uuid4().hex
        body = {
            "query": {"multi_match": {"query": judged.query, "fields": FIELDS}},
            "size": PAGE,
            "_source": False,
            "ext": {"ubi": {"query_id": query_id, "user_query": judged.query}},
        }
        async with http.post(f"{sidecar}/{index}/_search", json=body) as r:
            if r.status != 200:
                tally.errors += 1
                return
            hits = (await r.json())["hits"]["hits"]
        tally.searches += 1
        grades = [int(hit["_id"] in judged.relevant) for hit in hits]
        events = [
            {
                "action_name": "click",
                "query_id": query_id,
                "application": "demo",
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "event_attributes": {
                    "object": {"object_id": hits[p]["_id"], "object_id_field": "_id"},
                    "position": {"ordinal": p + 1},
                },
            }
            for p in model.clicks(grades, rng)
        ]
        if not events:
            return
        async with http.post(f"{sidecar}/_sidecar/ubi/events", json=events) as r:
            if r.status == 202:
                tally.clicks += len(events)
            else:
                tally.errors += 1


async def simulate(
    sidecar: str,
    index: str,
    queries: list[Judged],
    per_cohort: int,
    *,
    seed: int = 7,
    concurrency: int = 2,
) -> dict[str, Tally]:
    """``per_cohort`` searches in each cohort, interleaved between cohorts (so that the
    machine's ups and downs hit them alike), ``concurrency`` at a time."""
    rng = random.Random(seed)
    tallies = {mode: Tally() for mode, _, _ in COHORTS}
    plan = [
        (mode, f"{prefix}{1 + rng.randrange(250)}", rng.choice(queries))
        for _ in range(per_cohort)
        for mode, _, prefix in COHORTS
    ]
    gate = asyncio.Semaphore(concurrency)

    async def one(mode: str, address: str, judged: Judged, user_seed: int) -> None:
        async with gate:
            await _user(
                sidecar, index, address, judged, DEMO_USERS, random.Random(user_seed), tallies[mode]
            )

    await asyncio.gather(
        *(one(mode, addr, judged, rng.randrange(1 << 30)) for mode, addr, judged in plan)
    )
    return tallies


async def report(
    sidecar: str, es_url: str, token: str, indices: tuple[str, str], since: str
) -> Any:
    """The report from ``since`` on, once the sidecar has written its log (and ES made the
    writes searchable)."""
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 120
        while True:
            async with http.get(f"{sidecar}/_sidecar/ready") as r:
                state = (await r.json()).get("ubi", {})
            if state.get("queued_bytes") == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)  # the log writes in the background, every half second
        async with http.post(f"{es_url}/{','.join(indices)}/_refresh") as r:
            await r.read()
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{sidecar}/_sidecar/ubi/report"
        async with http.get(url, headers=headers, params={"since": since}) as r:
            r.raise_for_status()
            return await r.json()
