"""Two sidecar replicas sharing their state in a real redis-server, behind nginx round robin
(docker/nginx/replicas.conf), in front of the session's ES.

* A search scored on one replica is served ``cached`` by the other, in the same order: from
  the shared response cache (same caller), and from the shared score cache (another
  caller: the response cache's identity rules hold across replicas).
* Pages agree: page 2 on the busier replica continues page 1 exactly, and the order a first
  page served (its K included) is what every later page continues, on either replica, even
  after more of the window's scores were cached.
* Keys in Redis are digests: no query text, no credential.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.shared.conftest import Replicas
from tests.shared.support import (
    WINDOW,
    Answer,
    cache_stats,
    search,
    shared_state,
    until_written,
)

KEY = re.compile(r"^rerank-sidecar:v1:[sro]:[0-9a-f]{32,64}$")
SECRET = "Basic cmVwbGljYS11c2VyOnMzY3JldC1wYXNz"  # replica-user:s3cret-pass


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _next_goes_to_a(session: aiohttp.ClientSession, replicas: Replicas) -> None:
    """Send throwaway requests through the front until the one just sent went to replica
    b: round robin sends the next one to a."""
    for _ in range(4):
        async with session.get(replicas.front.url + "/") as r:
            if replicas.name(r.headers.get("X-Served-By", "")) == "b":
                return
    raise AssertionError("the front does not alternate between the replicas")


def _hits(answer: Answer) -> list[tuple[str, float]]:
    return list(zip(answer.ids, answer.scores, strict=True))


async def test_a_search_scored_on_one_replica_is_served_cached_by_another(
    replicas: Replicas, session: aiohttp.ClientSession
) -> None:
    query = "renewing a library card that has expired"
    before = await cache_stats(session, replicas.b.url)
    written = (await shared_state(session, replicas.a.url))["written"]
    await _next_goes_to_a(session, replicas)
    first = await search(session, replicas.front.url, query, headers={"Authorization": SECRET})
    await until_written(session, replicas.a.url, written)
    second = await search(session, replicas.front.url, query, headers={"Authorization": SECRET})
    assert (replicas.name(first.served_by), replicas.name(second.served_by)) == ("a", "b")
    assert (first.status, first.rerank) == (200, "applied")
    # Replica b never scored it: the shared response cache, the caller's own entry.
    assert (second.status, second.rerank) == (200, "cached")
    assert _hits(second) == _hits(first)
    after = await cache_stats(session, replicas.b.url)
    assert after["responses"]["shared_hits"] == before["responses"]["shared_hits"] + 1

    # Another caller never gets that entry, on any replica; the scores it is made of are
    # shared (rerank.cache.scope: shared), so b serves it reranked without its model.
    other = await search(
        session, replicas.b.url, query, headers={"Authorization": "Basic b3RoZXI6eA=="}
    )
    assert (other.status, other.rerank) == (200, "cached")
    assert _hits(other) == _hits(first)
    last = await cache_stats(session, replicas.b.url)
    assert last["responses"]["shared_hits"] == after["responses"]["shared_hits"]
    assert last["scores"]["shared_hits"] >= after["scores"]["shared_hits"] + WINDOW


async def test_keys_in_redis_are_digests_without_query_text_or_credentials(
    replicas: Replicas, session: aiohttp.ClientSession
) -> None:
    query = "interlibrary loan of rare manuscripts"
    written = (await shared_state(session, replicas.a.url))["written"]
    answer = await search(session, replicas.a.url, query, headers={"Authorization": SECRET})
    assert answer.rerank in ("applied", "cached")
    await until_written(session, replicas.a.url, written)
    keys = replicas.redis.keys("*")
    assert keys and all(KEY.match(k) for k in keys), keys
    kinds = {k.split(":")[2] for k in keys}
    assert {"s", "r", "o"} <= kinds
    for key in keys:
        assert "interlibrary" not in key and "cmVwbGljYS11" not in key
        value = replicas.redis.command("GET", key)
        # A cached response holds ES's hits, never the request's credentials.
        assert "cmVwbGljYS11c2VyOnMzY3JldC1wYXNz" not in str(value)
    ttls = [replicas.redis.command("PTTL", k) for k in keys]
    assert all(isinstance(t, int) and t > 0 for t in ttls), "every key expires"


def _k_order(full: Answer, k: int) -> list[str]:
    """The window's order when only its first ``k`` hits (ES order) are reranked, from an
    answer whose every hit carries its rerank score and original rank."""
    hits = full.body["hits"]["hits"]
    by_rank = sorted(hits, key=lambda h: h["_rerank"]["original_rank"])
    top = sorted(by_rank[:k], key=lambda h: -h["_rerank"]["rerank_score"])
    return [h["_id"] for h in top + by_rank[k:]]


async def test_page_two_on_a_busier_replica_continues_page_one(
    replicas: Replicas, session: aiohttp.ClientSession
) -> None:
    query = "medieval medicine and herbal remedies"
    full = await search(session, replicas.a.url, query, size=WINDOW)
    assert full.rerank == "applied"
    written = (await shared_state(session, replicas.a.url))["written"]
    page1 = await search(session, replicas.a.url, query, size=10)
    assert page1.ids == full.ids[:10]
    await until_written(session, replicas.a.url, written)
    # b is busier: its budget leaves no time for its model. Its page 2 is page 1's order.
    page2 = await search(session, replicas.b.url, query, size=10, page_from=10)
    assert (page2.status, page2.rerank) == (200, "cached")
    assert page2.ids == full.ids[10:20]
    assert len(set(page1.ids + page2.ids)) == WINDOW


async def test_later_pages_continue_the_k_their_first_page_served(
    replicas: Replicas, session: aiohttp.ClientSession
) -> None:
    query = "how to cite a dataset in a thesis"
    # The first 12 of the window's hits are scored (a search of its own, window 12).
    written = (await shared_state(session, replicas.a.url))["written"]
    primed = await search(session, replicas.a.url, query, rerank={"window": 12})
    assert primed.rerank == "applied"
    await until_written(session, replicas.a.url, written)
    # Page 1 on the busier replica: only the 12 scores cached are there to rerank with.
    written_b = (await shared_state(session, replicas.b.url))["written"]
    page1 = await search(session, replicas.b.url, query, size=10)
    assert (page1.status, page1.rerank) == (200, "cached; window=12")
    await until_written(session, replicas.b.url, written_b)
    # Another search with the same words scores the whole window: now all 20 are cached.
    every = await search(session, replicas.a.url, query, size=WINDOW, track_total_hits=True)
    assert every.rerank == "applied"
    k12 = _k_order(every, 12)
    assert k12[10:20] != every.ids[10:20], "the query must tell K=12 from K=20 apart"
    assert page1.ids == k12[:10]
    # Page 2 on either replica continues page 1's order (K=12), not what it could do now.
    for replica in (replicas.a, replicas.b):
        page2 = await search(session, replica.url, query, size=10, page_from=10)
        assert (page2.status, page2.rerank) == (200, "cached; window=12")
        assert page2.ids == k12[10:20]


async def test_a_first_page_in_es_order_is_continued_in_es_order(
    replicas: Replicas, session: aiohttp.ClientSession
) -> None:
    query = "audio books for the visually impaired"
    es = await search(session, replicas.a.url, query, size=WINDOW, rerank={"enabled": False})
    assert es.rerank == "skipped; reason=disabled_by_request"
    # Page 1 on the busier replica: nothing cached and no time for its model, ES order.
    written = (await shared_state(session, replicas.b.url))["written"]
    page1 = await search(session, replicas.b.url, query, size=10)
    assert (page1.status, page1.rerank) == (200, "fallback; reason=budget")
    assert page1.ids == es.ids[:10]
    await until_written(session, replicas.b.url, written)
    # Page 2 on the replica that could rerank: it continues ES order, so no hit of page 1
    # comes back and none of the window is skipped.
    page2 = await search(session, replicas.a.url, query, size=10, page_from=10)
    assert (page2.status, page2.rerank) == (200, "skipped; reason=page_order")
    assert page2.ids == es.ids[10:20]
