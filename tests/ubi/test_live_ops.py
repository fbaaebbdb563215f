"""UBI in operation, on real processes: ES refusing, hanging or rejecting the log's writes
(searches are not touched, the loss is counted, memory stays bounded), the guard, retention,
the ``report`` command, and an OpenSearch cluster (its ``flat_object`` mapping)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devtools.fakes import es_error_body
from es_integration.local_opensearch import LocalOpenSearch
from sidecar.keys import UBI
from sidecar.ubi.schema import utc
from tests.conftest import ESTarget
from tests.support.apps import RunningSidecar, running_sidecar
from tests.support.search import multi_match
from tests.support.ubi import MODE, QUERY, RERANKED, TOKEN, interleaved, now, put_logs, ubi_config
from tests.support.wire_tap import Seen, wire_tap

#: The log's queue, small enough that a few dozen searches fill it.
QUEUE_BYTES = 8192
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


async def guard_checked(sc: RunningSidecar, more: int) -> None:
    """Until the guard has checked ``more`` more times (a minute at most)."""
    service = sc.app[UBI]
    async with asyncio.timeout(60):
        await service.guard_checked(service.guard_checks + more)


async def tracked_searches(
    http: aiohttp.ClientSession, sc: RunningSidecar, index: str, n: int
) -> list[str]:
    """``n`` searches with ``ext.ubi``, each answered and reranked; their X-Rerank."""
    headers = []
    for i in range(n):
        body = multi_match(QUERY, size=5) | {"ext": {"ubi": {"query_id": f"fault-{i}"}}}
        async with http.post(f"{sc.url}/{index}/_search", json=body, headers={MODE: "on"}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["ext"]["ubi"]["query_id"] == f"fault-{i}"
            headers.append(r.headers["X-Rerank"])
    return headers


class RefusedBulks:
    """Answers every ``_bulk`` with ``status``, counting the tries."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.tries = 0
        self._tried = asyncio.Condition()

    async def __call__(self, request: Seen) -> web.Response | None:
        if not request.path_qs.startswith("/_bulk"):
            return None
        async with self._tried:
            self.tries += 1
            self._tried.notify_all()
        return web.json_response(es_error_body(self.status, "busy"), status=self.status)

    async def tried(self, times: int) -> None:
        async with asyncio.timeout(60), self._tried:
            await self._tried.wait_for(lambda: self.tries >= times)


async def ready_ubi(http: aiohttp.ClientSession, sc: RunningSidecar) -> dict[str, Any]:
    async with http.get(f"{sc.url}/_sidecar/ready") as r:
        state: dict[str, Any] = (await r.json())["ubi"]
        return state


@pytest.mark.parametrize("status", [429, 503])
async def test_es_refusing_the_log_costs_searches_nothing_and_is_counted(
    es: ESTarget, sample_index: str, status: int
) -> None:
    async with wire_tap(es.url) as tap, aiohttp.ClientSession() as http:
        config = ubi_config(tap.url, tuning={"limits": {"ubi_queue_bytes": QUEUE_BYTES}})
        async with running_sidecar(config) as sc:
            tap.answer = refused = RefusedBulks(status)
            outcomes = await tracked_searches(http, sc, sample_index, 40)
            assert all(o.startswith(RERANKED) for o in outcomes)
            # A second try comes after the first one's failure was recorded.
            await refused.tried(2)
            state = await ready_ubi(http, sc)
            assert state["queued_bytes"] <= QUEUE_BYTES
            assert state["dropped"]["queue_full"] > 0
            assert str(status) in state["last_error"]
            # Events are refused while the queue is full, with a status that says "later".
            async with http.post(
                f"{sc.url}/_sidecar/ubi/events",
                json=[{"action_name": "click", "query_id": "q", "timestamp": utc(now())}] * 40,
            ) as r:
                assert r.status == 503
                assert (await r.json())["error"]["type"] == "service_unavailable_exception"
            tap.answer = None  # ES takes writes again: what was kept is written
            await sc.app[UBI].log.flushed()
            state = await ready_ubi(http, sc)
            assert state["written"] > 0 and state["queued_bytes"] == 0
            assert state["last_error"] is None
            assert state["written"] + state["dropped"]["queue_full"] == 40


async def test_a_hanging_es_holds_the_log_not_the_searches(es: ESTarget, sample_index: str) -> None:
    async with (
        wire_tap(es.url) as tap,
        aiohttp.ClientSession() as http,
        running_sidecar(ubi_config(tap.url)) as sc,
    ):
        held, release = asyncio.Event(), asyncio.Event()

        async def hang(request: Seen) -> web.Response | None:
            if request.path_qs.startswith("/_bulk"):
                held.set()
                await release.wait()
            return None

        tap.answer = hang
        await tracked_searches(http, sc, sample_index, 1)
        await held.wait()
        # The log's write is held by ES: every search is answered meanwhile.
        outcomes = await tracked_searches(http, sc, sample_index, 10)
        assert all(o.startswith(RERANKED) for o in outcomes)
        assert not release.is_set()
        release.set()
        await sc.app[UBI].log.flushed()
        state = await ready_ubi(http, sc)
        assert state["written"] == 11 and not state["dropped"]


async def test_documents_es_rejects_are_counted(es: ESTarget, sample_index: str) -> None:
    config = ubi_config(es.url)
    index = config["ubi"]["queries_index"]
    async with aiohttp.ClientSession() as http:
        # An index of the same name that someone made with another mapping.
        wrong = {"mappings": {"properties": {"timestamp": {"type": "long"}}}}
        async with http.put(f"{es.url}/{index}", json=wrong) as r:
            assert r.status == 200
        async with running_sidecar(config) as sc:
            await tracked_searches(http, sc, sample_index, 3)
            await sc.app[UBI].log.flushed()
            state = await ready_ubi(http, sc)
            assert state["dropped"] == {"rejected": 3}
            assert state["written"] == 0


@pytest.mark.parametrize("keep", ["hash", "drop"])
async def test_query_text_hashed_or_dropped_in_queries_and_events(
    es: ESTarget, sample_index: str, keep: str
) -> None:
    """``ubi.query_text`` holds for both indices: the text a search logs and the
    ``user_query`` an event carries are stored hashed (the same text, the same hash) or not
    at all, never as typed."""
    secret = "divorce lawyer near me"
    config = ubi_config(es.url, ubi={"query_text": keep})
    ubi = config["ubi"]
    async with aiohttp.ClientSession() as http, running_sidecar(config) as sc:
        body = multi_match(QUERY, size=2) | {"ext": {"ubi": {"user_query": secret}}}
        async with http.post(f"{sc.url}/{sample_index}/_search", json=body) as r:
            assert r.status == 200
            query_id = (await r.json())["ext"]["ubi"]["query_id"]
        event = {"action_name": "search", "query_id": query_id, "timestamp": utc(now())}
        async with http.post(
            f"{sc.url}/_sidecar/ubi/events", json=event | {"user_query": secret}
        ) as r:
            assert r.status == 202
        await sc.app[UBI].log.flushed()
        async with http.post(f"{es.url}/{ubi['queries_index']},{ubi['events_index']}/_refresh"):
            pass
        stored = []
        for index in (ubi["queries_index"], ubi["events_index"]):
            async with http.get(f"{es.url}/{index}/_search", params={"size": "10"}) as r:
                stored += [h["_source"] for h in (await r.json())["hits"]["hits"]]
    assert len(stored) == 2
    assert secret not in json.dumps(stored)
    texts = {doc.get("user_query") for doc in stored}
    if keep == "drop":
        assert texts == {None}
    else:
        (digest,) = texts  # the search's and the event's: one text, one hash
        assert isinstance(digest, str) and len(digest) == 32


async def rollout(http: aiohttp.ClientSession, sc: RunningSidecar) -> dict[str, Any]:
    async with http.get(f"{sc.url}/_sidecar/admin/rollout", headers=ADMIN) as r:
        assert r.status == 200
        answer: dict[str, Any] = await r.json()
        return answer


async def test_the_guard_turns_reranking_off_when_es_order_wins(
    es: ESTarget, sample_index: str
) -> None:
    guard = {"enabled": True, "interval_s": 0.05, "min_decisive_queries": 20, "alpha": 0.01}
    config = ubi_config(es.url, ubi={"guard": guard}, rollout={"default": "interleave"})
    async with aiohttp.ClientSession() as http, running_sidecar(config) as sc:
        service = sc.app[UBI]
        await guard_checked(sc, 2)
        assert (await rollout(http, sc))["guard_tripped"] is None
        queries, events = interleaved(30, "es", now())
        await put_logs(http, es.url, config, queries, events)
        # A check that began before the logs were in may not see them; the next one does.
        await guard_checked(sc, 2)
        assert service.guard_trips == 1
        tripped = (await rollout(http, sc))["guard_tripped"]
        assert tripped is not None and "Elasticsearch" in tripped
        # The rules still say interleave; the guard serves ES's order.
        body = multi_match(QUERY, size=3)
        async with http.post(f"{sc.url}/{sample_index}/_search", json=body) as r:
            assert r.status == 200
            assert r.headers["X-Rerank"] == "skipped; reason=rollout_off"
        async with http.post(f"{sc.url}/_sidecar/admin/rollout/reload", headers=ADMIN) as r:
            assert r.status == 200
            assert (await r.json())["guard_tripped"] is None
        # The logs judged were served under the rules before the reload: not judged again.
        await guard_checked(sc, 3)
        assert (await rollout(http, sc))["guard_tripped"] is None
        assert service.guard_trips == 1


async def test_the_guard_leaves_a_winning_reranker_alone(es: ESTarget) -> None:
    guard = {"enabled": True, "interval_s": 0.05, "min_decisive_queries": 20}
    config = ubi_config(es.url, ubi={"guard": guard}, rollout={"default": "interleave"})
    async with aiohttp.ClientSession() as http, running_sidecar(config, wait_model=False) as sc:
        queries, events = interleaved(30, "rerank", now())
        await put_logs(http, es.url, config, queries, events)
        await guard_checked(sc, 3)
        assert (await rollout(http, sc))["guard_tripped"] is None


async def test_retention_deletes_what_is_older_than_retention_days(es: ESTarget) -> None:
    config = ubi_config(es.url, ubi={"retention_days": 30})
    old, recent = now() - timedelta(days=31), now() - timedelta(days=29)
    queries_old, events_old = interleaved(3, "es", old)
    queries_new, events_new = interleaved(2, "es", recent)
    async with aiohttp.ClientSession() as http, running_sidecar(config, wait_model=False) as sc:
        await put_logs(http, es.url, config, queries_old + queries_new, events_old + events_new)
        await sc.app[UBI].retain()
        for index, kept in (("queries_index", queries_new), ("events_index", events_new)):
            name = config["ubi"][index]
            async with http.post(f"{es.url}/{name}/_refresh"):
                pass
            async with http.post(f"{es.url}/{name}/_search", json={"size": 100}) as r:
                left = {h["_source"]["query_id"] for h in (await r.json())["hits"]["hits"]}
            assert left == {d["query_id"] for d in kept}


def report_cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "report", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_report_command_prints_what_the_api_answers(es: ESTarget, tmp_path: Path) -> None:
    config = ubi_config(es.url)
    queries, events = interleaved(12, "rerank", now() - timedelta(hours=1))
    config_path = tmp_path / "sidecar.yaml"
    config_path.write_text(json.dumps(config), encoding="utf-8")  # YAML is a superset
    async with aiohttp.ClientSession() as http, running_sidecar(config, wait_model=False) as sc:
        await put_logs(http, es.url, config, queries, events)
        async with http.get(
            f"{sc.url}/_sidecar/ubi/report", params={"since": "now-1d"}, headers=ADMIN
        ) as r:
            api = await r.json()
    assert api["interleaving"]["rerank_wins"] == 12
    done = await asyncio.to_thread(report_cli, config_path, "--since", "now-1d", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == api
    plot = tmp_path / "cohorts.svg"
    done = await asyncio.to_thread(report_cli, config_path, "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    assert "interleave" in done.stdout and "rerank_wins" not in done.stdout  # a table
    assert ET.parse(plot).getroot().tag.endswith("svg")


def test_the_report_command_without_es_says_so_in_one_line(tmp_path: Path) -> None:
    config_path = tmp_path / "sidecar.yaml"
    config = ubi_config("http://127.0.0.1:9")  # nothing listens on the discard port
    config_path.write_text(json.dumps(config), encoding="utf-8")
    done = report_cli(config_path)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("report: ") and done.stderr.count("\n") == 1


async def test_opensearch_gets_flat_object_mappings(tmp_path: Path) -> None:
    with LocalOpenSearch.start(log_path=tmp_path / "opensearch.log") as server:
        config = ubi_config(server.url)
        async with aiohttp.ClientSession() as http:
            async with running_sidecar(config, wait_model=False) as sc:
                body = multi_match(QUERY, size=2) | {"ext": {"ubi": {"query_id": "os-1"}}}
                async with http.post(f"{sc.url}/nothing-here/_search", json=body) as r:
                    assert r.status == 404  # ES's own answer, logged all the same
                event = {"action_name": "click", "query_id": "os-1", "timestamp": utc(now())}
                async with http.post(f"{sc.url}/_sidecar/ubi/events", json=event) as r:
                    assert r.status == 202
                await sc.app[UBI].log.flushed()
            name = config["ubi"]["queries_index"]
            async with http.get(f"{server.url}/{name}/_mapping") as r:
                mapping = (await r.json())[name]["mappings"]["properties"]
            assert mapping["query_attributes"]["type"] == "flat_object"
            async with http.post(f"{server.url}/_refresh") as r:
                pass
            async with http.get(f"{server.url}/{name}/_count") as r:
                assert (await r.json())["count"] == 1
