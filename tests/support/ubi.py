"""Helpers for the UBI tests: a sidecar config with UBI on, and hand-made logs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from sidecar.ubi.schema import EVENTS_MAPPING, QUERIES_MAPPING, utc
from tests.support.search import base_config

TOKEN = "ubi-admin-token"
MODE = "X-Rerank-Mode"
QUERY = "how did doctors treat illness in the middle ages"
#: X-Rerank of a reranked answer: scored now, or from the score cache (an earlier test).
RERANKED = ("applied", "cached")


def ubi_config(es_url: str, **over: Any) -> dict[str, Any]:
    """UBI on, into indices of this test's own; every mode choosable per request."""
    suffix = uuid.uuid4().hex[:8]
    ubi = {"enabled": True, "queries_index": f"q-{suffix}", "events_index": f"e-{suffix}"}
    return base_config(
        es_url,
        ubi=ubi | over.pop("ubi", {}),
        admin={"token": TOKEN},
        rollout={"default": "on", "trusted_clients": ["127.0.0.1/32"]} | over.pop("rollout", {}),
        **over,
    )


def now() -> datetime:
    return datetime.now(UTC)


async def put_logs(
    http: aiohttp.ClientSession,
    es_url: str,
    config: dict[str, Any],
    queries: list[dict[str, Any]],
    events: list[dict[str, Any]],
) -> None:
    """Hand-made logs, in indices made with the sidecar's own mappings."""
    ubi = config["ubi"]
    for index, mapping in (
        (ubi["queries_index"], QUERIES_MAPPING),
        (ubi["events_index"], EVENTS_MAPPING),
    ):
        async with http.put(f"{es_url}/{index}", json={"mappings": mapping}) as r:
            assert r.status == 200 or "already_exists" in await r.text()
    lines = []
    for index, docs in ((ubi["queries_index"], queries), (ubi["events_index"], events)):
        for doc in docs:
            lines += [json.dumps({"index": {"_index": index}}), json.dumps(doc)]
    data = "\n".join(lines) + "\n"
    headers = {"Content-Type": "application/x-ndjson"}
    async with http.post(f"{es_url}/_bulk?refresh=true", data=data, headers=headers) as r:
        assert r.status == 200
        assert not (await r.json())["errors"]


def interleaved(
    n: int, winner: str, at: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` interleaved queries of two hits, each clicked on the hit ``winner`` placed."""
    queries, events = [], []
    for i in range(n):
        query_id = f"il-{uuid.uuid4().hex}"
        teams = ["rerank", "es"] if i % 2 else ["es", "rerank"]
        queries.append(
            {
                "query_id": query_id,
                "query_response_id": uuid.uuid4().hex,
                "query_response_hit_ids": [f"d{i}-a", f"d{i}-b"],
                "timestamp": utc(at),
                "query_attributes": {
                    "rerank_mode": "interleave",
                    "rerank_from": "0",
                    "rerank_teams": teams,
                },
            }
        )
        clicked = f"d{i}-a" if teams[0] == winner else f"d{i}-b"
        events.append(
            {
                "action_name": "click",
                "query_id": query_id,
                "timestamp": utc(at + timedelta(seconds=5)),
                "event_attributes": {"object": {"object_id": clicked}},
            }
        )
    return queries, events
