"""UBI on real processes: a real sidecar in front of a wire tap in front of the session's
ES (real BM25, real mappings), real HTTP clients.

What ES receives is read at the tap (the local server would accept an ``ext`` real ES
refuses, so the rule is asserted on the wire: ``ext.ubi`` never reaches ES). What is logged
is read back from the indices in ES, as the report reads it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from sidecar.keys import UBI
from sidecar.ubi.schema import utc
from tests.conftest import ESTarget
from tests.support.apps import RunningSidecar, running_sidecar
from tests.support.search import multi_match
from tests.support.ubi import MODE, QUERY, RERANKED, TOKEN, ubi_config
from tests.support.wire_tap import WireTap, wire_tap


@pytest.fixture(scope="module")
async def tap(es: ESTarget, sample_index: str) -> AsyncIterator[WireTap]:
    async with wire_tap(es.url) as tapped:
        yield tapped


@pytest.fixture(scope="module")
async def sc(tap: WireTap) -> AsyncIterator[RunningSidecar]:
    async with running_sidecar(ubi_config(tap.url)) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def search(
    http: aiohttp.ClientSession, sc: RunningSidecar, body: Any, mode: str, index: str
) -> tuple[str, dict[str, Any]]:
    async with http.post(f"{sc.url}/{index}/_search", json=body, headers={MODE: mode}) as r:
        assert r.status == 200, await r.text()
        return r.headers["X-Rerank"], await r.json()


async def read_back(
    http: aiohttp.ClientSession, sc: RunningSidecar, es_url: str, index: str, query_id: str
) -> list[dict[str, Any]]:
    """The documents of ``query_id`` in ``index`` once the log is written, oldest first."""
    await sc.app[UBI].log.flushed()
    async with http.post(f"{es_url}/{index}/_refresh") as r:
        assert r.status == 200
    body = {"query": {"term": {"query_id": query_id}}, "sort": [{"timestamp": "asc"}]}
    async with http.post(f"{es_url}/{index}/_search", json=body | {"size": 100}) as r:
        assert r.status == 200, await r.text()
        return [h["_source"] for h in (await r.json())["hits"]["hits"]]


async def logged(
    http: aiohttp.ClientSession, sc: RunningSidecar, es_url: str, query_id: str
) -> list[dict[str, Any]]:
    """The ``ubi_queries`` documents of ``query_id``, in the order served."""
    return await read_back(http, sc, es_url, sc.config.ubi.queries_index, query_id)


def ids(answer: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in answer["hits"]["hits"]]


# --- the search path ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["off", "on", "interleave"])
async def test_ext_ubi_never_reaches_es_and_the_answer_carries_the_query_id(
    http: aiohttp.ClientSession, sc: RunningSidecar, tap: WireTap, sample_index: str, mode: str
) -> None:
    query_id = f"wire-{mode}-{uuid.uuid4().hex[:6]}"
    other_ext = {"collapse_hint": {"x": 1}}
    body = multi_match(QUERY, size=5) | {
        "ext": {"ubi": {"query_id": query_id, "user_query": QUERY}, **other_ext}
    }
    tap.take()
    _, answer = await search(http, sc, body, mode, sample_index)
    assert answer["ext"] == {"ubi": {"query_id": query_id}}
    sent = [json.loads(s.body) for s in tap.take() if s.path_qs.startswith(f"/{sample_index}/")]
    assert len(sent) == 1
    # The client's other ext entries reach ES as sent; only ubi is the sidecar's.
    assert sent[0]["ext"] == other_ext
    if mode == "off":
        assert sent[0] == multi_match(QUERY, size=5) | {"ext": other_ext}


async def test_a_search_without_ext_ubi_is_given_a_query_id_and_logged(
    http: aiohttp.ClientSession, sc: RunningSidecar, es: ESTarget, sample_index: str
) -> None:
    body = multi_match(QUERY, size=3)
    async with http.post(f"{es.url}/{sample_index}/_search", json=body) as r:
        direct = await r.json()
    _, answer = await search(http, sc, body, "off", sample_index)
    query_id = answer.pop("ext")["ubi"]["query_id"]
    assert ids(answer) == ids(direct)
    (doc,) = await logged(http, sc, es.url, query_id)
    assert doc["query_response_hit_ids"] == ids(direct)
    assert doc["user_query"] == QUERY  # the query text the sidecar reranks by
    # The client is known by a keyed hash: no address is stored.
    assert len(doc["client_id"]) == 32 and "127.0.0.1" not in json.dumps(doc)


async def test_each_page_is_logged_as_served(
    http: aiohttp.ClientSession, sc: RunningSidecar, es: ESTarget, sample_index: str
) -> None:
    query_id = uuid.uuid4().hex
    ext = {"ubi": {"query_id": query_id, "user_query": "medieval doctors", "client_id": "c-1"}}
    pages = []
    for start in (0, 5):
        body = multi_match(QUERY, size=5, **{"from": start}) | {"ext": ext}
        header, answer = await search(http, sc, body, "on", sample_index)
        assert header.startswith(RERANKED)
        pages.append(ids(answer))
    docs = await logged(http, sc, es.url, query_id)
    assert [d["query_response_hit_ids"] for d in docs] == pages
    for doc, start in zip(docs, (0, 5), strict=True):
        attributes = doc["query_attributes"]
        assert attributes["rerank_mode"] == "on"
        assert attributes["rerank_from"] == str(start)
        assert attributes["rerank_outcome"].startswith(RERANKED)
        assert attributes["rerank_model"] == sc.config.model.name
        assert doc["user_query"] == "medieval doctors"
        assert doc["client_id"] == "c-1"
        assert doc["timestamp"].endswith("Z")
    assert len({d["query_response_id"] for d in docs}) == 2


async def test_object_id_field_names_the_hits_even_when_source_is_off(
    http: aiohttp.ClientSession, sc: RunningSidecar, es: ESTarget, sample_index: str
) -> None:
    query_id = uuid.uuid4().hex
    ext = {"ubi": {"query_id": query_id, "object_id_field": "title"}}
    body = multi_match(QUERY, size=3, _source=False) | {"ext": ext}
    _, answer = await search(http, sc, body, "on", sample_index)
    assert all("_source" not in h for h in answer["hits"]["hits"])
    (doc,) = await logged(http, sc, es.url, query_id)
    async with http.post(
        f"{es.url}/{sample_index}/_search",
        json={"query": {"ids": {"values": ids(answer)}}, "size": 3},
    ) as r:
        titles = {h["_id"]: h["_source"]["title"] for h in (await r.json())["hits"]["hits"]}
    assert doc["query_response_hit_ids"] == [titles[i] for i in ids(answer)]
    assert doc["object_id_field"] == "title"


async def test_the_sidecars_attributes_cannot_be_written_by_a_client(
    http: aiohttp.ClientSession, sc: RunningSidecar, es: ESTarget, sample_index: str
) -> None:
    query_id = uuid.uuid4().hex
    attributes = {"experiment": "blue", "rerank_mode": "interleave"}
    body = multi_match(QUERY, size=2) | {
        "ext": {"ubi": {"query_id": query_id, "query_attributes": attributes}}
    }
    await search(http, sc, body, "off", sample_index)
    (doc,) = await logged(http, sc, es.url, query_id)
    assert doc["query_attributes"]["experiment"] == "blue"
    assert doc["query_attributes"]["rerank_mode"] == "off"


@pytest.mark.parametrize(
    ("ubi", "field"),
    [
        ("not an object", "[ext.ubi]"),
        ({"query_id": 7}, "[ext.ubi.query_id]"),
        ({"query_id": "x" * 101}, "[ext.ubi.query_id]"),
        ({"user_query": ["a"]}, "[ext.ubi.user_query]"),
        ({"query_attributes": {"a": {"b": 1}}}, "[ext.ubi.query_attributes.a]"),
    ],
)
async def test_a_malformed_ext_ubi_is_an_es_shaped_400(
    http: aiohttp.ClientSession, sc: RunningSidecar, sample_index: str, ubi: Any, field: str
) -> None:
    body = multi_match(QUERY, size=2) | {"ext": {"ubi": ubi}}
    async with http.post(f"{sc.url}/{sample_index}/_search", json=body) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["type"] == "illegal_argument_exception"
    assert field in error["reason"]


async def test_interleaved_pages_continue_one_list(
    http: aiohttp.ClientSession, sc: RunningSidecar, es: ESTarget, sample_index: str
) -> None:
    query_id = uuid.uuid4().hex
    ext = {"ubi": {"query_id": query_id}}
    whole_body = multi_match(QUERY, size=10) | {"ext": ext}
    _, whole = await search(http, sc, whole_body, "interleave", sample_index)
    pages: list[str] = []
    for start in (0, 5):
        body = multi_match(QUERY, size=5, **{"from": start}) | {"ext": ext}
        _, answer = await search(http, sc, body, "interleave", sample_index)
        pages += ids(answer)
    assert pages == ids(whole)
    assert len(set(pages)) == 10
    # The page's scores are ES's, in ES's order: a client sorting by _score keeps the list.
    scores = [h["_score"] for h in whole["hits"]["hits"]]
    assert scores == sorted(scores, reverse=True)
    docs = await logged(http, sc, es.url, query_id)
    teams = [t for d in docs[1:] for t in d["query_attributes"]["rerank_teams"]]
    assert sorted(set(teams)) == ["es", "rerank"]
    assert abs(teams.count("es") - teams.count("rerank")) <= 1


async def test_interleaved_pages_without_a_query_id_continue_too(
    http: aiohttp.ClientSession, sc: RunningSidecar, sample_index: str
) -> None:
    # A frontend that knows nothing of UBI: each page is a search of its own to the log,
    # but the list is the same one (its coins come from the query).
    _, whole = await search(http, sc, multi_match(QUERY, size=10), "interleave", sample_index)
    pages: list[str] = []
    for start in (0, 5):
        body = multi_match(QUERY, size=5, **{"from": start})
        _, answer = await search(http, sc, body, "interleave", sample_index)
        pages += ids(answer)
    assert pages == ids(whole)
    # A frontend that sends back the query_id the first page's answer carried (as UBI
    # clients do): the list goes on from the first page's coins, still the query's.
    _, first = await search(http, sc, multi_match(QUERY, size=5), "interleave", sample_index)
    query_id = first["ext"]["ubi"]["query_id"]
    body = multi_match(QUERY, size=5, **{"from": 5}) | {"ext": {"ubi": {"query_id": query_id}}}
    _, second = await search(http, sc, body, "interleave", sample_index)
    assert second["ext"]["ubi"]["query_id"] == query_id
    assert ids(first) + ids(second) == ids(whole)


async def test_msearch_logs_each_sub_search(
    http: aiohttp.ClientSession,
    sc: RunningSidecar,
    tap: WireTap,
    es: ESTarget,
    sample_index: str,
) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    lines = [
        {"index": sample_index},
        multi_match(QUERY, size=3) | {"ext": {"ubi": {"query_id": first}}},
        {"index": sample_index},
        multi_match("reset my password", size=2) | {"ext": {"ubi": {"query_id": second}}},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines)
    tap.take()
    headers = {"Content-Type": "application/x-ndjson", MODE: "on"}
    async with http.post(f"{sc.url}/_msearch", data=data, headers=headers) as r:
        assert r.status == 200
        responses = (await r.json())["responses"]
    assert [x["ext"]["ubi"]["query_id"] for x in responses] == [first, second]
    sent = [s.body for s in tap.take() if s.path_qs.startswith("/_msearch")]
    assert len(sent) == 1 and b"ubi" not in sent[0]
    for query_id, response in zip((first, second), responses, strict=True):
        (doc,) = await logged(http, sc, es.url, query_id)
        assert doc["query_response_hit_ids"] == ids(response)


async def test_events_written_straight_to_es_through_the_sidecar_pass_through(
    http: aiohttp.ClientSession, sc: RunningSidecar, es: ESTarget
) -> None:
    await sc.app[UBI].log.prepared.wait()  # the sidecar made the index, with its mapping
    index = sc.config.ubi.events_index
    event = {"action_name": "click", "query_id": "direct-1", "timestamp": "2026-12-06T10:00:00Z"}
    async with http.post(f"{sc.url}/{index}/_doc?refresh=true", json=event) as r:
        assert r.status == 201, await r.text()
    async with http.post(
        f"{es.url}/{index}/_search", json={"query": {"term": {"query_id": "direct-1"}}}
    ) as r:
        assert [h["_source"] for h in (await r.json())["hits"]["hits"]] == [event]


# --- events ---------------------------------------------------------------------------------


def click(query_id: str, object_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "action_name": "click",
        "query_id": query_id,
        "timestamp": "2026-12-06T10:00:00.123+01:00",
        "event_attributes": {"object": {"object_id": object_id}, "position": {"ordinal": 1}},
        **extra,
    }


async def post_events(
    http: aiohttp.ClientSession, sc: RunningSidecar, data: Any, content_type: str
) -> tuple[int, dict[str, Any]]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = {"Content-Type": content_type}
    async with http.post(f"{sc.url}/_sidecar/ubi/events", data=raw, headers=headers) as r:
        return r.status, await r.json()


async def stored_events(
    http: aiohttp.ClientSession, sc: RunningSidecar, es_url: str, query_id: str
) -> list[dict[str, Any]]:
    return await read_back(http, sc, es_url, sc.config.ubi.events_index, query_id)


async def test_events_are_stored_as_sent_in_every_accepted_shape(
    http: aiohttp.ClientSession, sc: RunningSidecar, es: ESTarget
) -> None:
    query_id = uuid.uuid4().hex
    one = click(query_id, "cat-0001", session_id="s-1")
    ndjson = b"".join(json.dumps(click(query_id, f"cat-000{i}")).encode() + b"\n" for i in (2, 3))
    assert await post_events(http, sc, one, "application/json") == (202, {"accepted": 1})
    assert await post_events(http, sc, [one, one], "application/json") == (202, {"accepted": 2})
    assert await post_events(http, sc, ndjson, "application/x-ndjson") == (202, {"accepted": 2})
    stored = await stored_events(http, sc, es.url, query_id)
    assert len(stored) == 5
    first = next(e for e in stored if e.get("session_id") == "s-1")
    # The timestamp is normalized to UTC (the mapping is strict_date_time), the rest kept.
    assert first["timestamp"] == "2026-12-06T09:00:00.123Z"
    assert first["event_attributes"] == one["event_attributes"]


BAD_EVENTS = [
    (b"{not json", "body"),
    (b"", "body"),
    (b"[1]", "event"),
    (json.dumps([{"query_id": "q", "timestamp": "2026-12-06T10:00:00Z"}]).encode(), "action_name"),
    (
        json.dumps([{"action_name": "click", "timestamp": "2026-12-06T10:00:00Z"}]).encode(),
        "query_id",
    ),
    (json.dumps([click("q", "a") | {"timestamp": "2026-12-06T10:00:00"}]).encode(), "timestamp"),
    (json.dumps([click("q", "a") | {"timestamp": "yesterday"}]).encode(), "timestamp"),
    (json.dumps([click("q", "a") | {"action_name": 5}]).encode(), "action_name"),
    (
        json.dumps(
            [click("q", "a"), click("q", "a") | {"event_attributes": {"object": []}}]
        ).encode(),
        "event_attributes.object",
    ),
    (
        json.dumps(
            [click("q", "a") | {"event_attributes": {"position": {"ordinal": -1}}}]
        ).encode(),
        "event_attributes.position.ordinal",
    ),
    (
        json.dumps([click("q", "a") | {"event_attributes": {"position": {"x": "left"}}}]).encode(),
        "event_attributes.position.x",
    ),
    (
        json.dumps([click("q", {"id": 1})]).encode(),  # type: ignore[arg-type]
        "event_attributes.object.object_id",
    ),
]


@pytest.mark.parametrize(("raw", "field"), BAD_EVENTS)
async def test_a_bad_event_is_a_400_naming_it_and_nothing_is_stored(
    http: aiohttp.ClientSession, sc: RunningSidecar, raw: bytes, field: str
) -> None:
    before = sc.app[UBI].log.queued_bytes + sc.app[UBI].log.written
    status, body = await post_events(http, sc, raw, "application/json")
    assert status == 400
    assert body["error"]["type"] == "parse_exception"
    assert f"[{field}]" in body["error"]["reason"]
    await sc.app[UBI].log.flushed()
    assert sc.app[UBI].log.queued_bytes + sc.app[UBI].log.written == before


async def test_clicks_on_queries_never_served_are_counted_apart(
    http: aiohttp.ClientSession, sc: RunningSidecar, es: ESTarget, sample_index: str
) -> None:
    served = uuid.uuid4().hex
    since = utc(datetime.now(UTC) - timedelta(milliseconds=1))
    body = multi_match(QUERY, size=3) | {"ext": {"ubi": {"query_id": served}}}
    _, answer = await search(http, sc, body, "on", sample_index)
    events = [click(served, ids(answer)[1]), click(served, "nowhere")]
    events += [click(f"never-{uuid.uuid4().hex}", "cat-0001") for _ in range(3)]
    for event in events:
        event["timestamp"] = utc(datetime.now(UTC))
    assert (await post_events(http, sc, events, "application/json"))[0] == 202
    await stored_events(http, sc, es.url, served)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    # The period starts at this test's search: earlier tests' queries and clicks are out.
    async with http.get(
        f"{sc.url}/_sidecar/ubi/report", params={"since": since}, headers=headers
    ) as r:
        assert r.status == 200
        figures = await r.json()
    assert figures["clicks"] == {"matched": 1, "on_other_objects": 1, "on_unknown_queries": 3}


async def test_the_report_is_the_admin_apis(
    http: aiohttp.ClientSession, sc: RunningSidecar
) -> None:
    url = f"{sc.url}/_sidecar/ubi/report"
    async with http.get(url) as r:
        assert r.status == 401
        assert (await r.json())["error"]["type"] == "security_exception"
    async with http.get(url, headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status in (401, 403)
    good = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(url, headers=good, params={"since": "last tuesday"}) as r:
        assert r.status == 400
        assert "[since]" in (await r.json())["error"]["reason"]
    async with http.get(url, headers=good, params={"since": "now-7d"}) as r:
        assert r.status == 200
        assert set(await r.json()) >= {"cohorts", "interleaving", "clicks", "period"}


async def test_event_limits_answer_413_and_429(tap: WireTap) -> None:
    # One request per 100 s: a second request in a row is over the rate however slow the
    # machine is.
    limits = {"per_client_per_s": 0.01, "max_body_bytes": 4096}
    config = ubi_config(tap.url, ubi={"events": limits})
    async with running_sidecar(config, wait_model=False) as small, aiohttp.ClientSession() as http:
        status, body = await post_events(http, small, b"[" + b" " * 5000 + b"]", "application/json")
        assert status == 413
        assert body["error"]["type"] == "content_too_long_exception"
        assert (await post_events(http, small, click("q", "a"), "application/json"))[0] == 202
        status, body = await post_events(http, small, click("q", "a"), "application/json")
        assert status == 429
        assert body["error"]["type"] == "too_many_requests_exception"
