"""Elasticsearch faults: down at start, down mid-load and back, error statuses, too slow,
broken or invalid answers, and answers too large to hold.

The sidecar's promise: ES's own answers pass through unchanged (and the model is not asked);
when ES cannot give one, an ES-shaped 502 (unreachable, broken, too large to rerank) or 504
(too slow); never a 500, never a crash, and it recovers by itself.

Pass-through 429/500/503 and the 502/504 of the pass-through path are covered in
tests/proxy/test_passthrough.py; ES stopping and restarting under a single client in
tests/integration/test_es_outage.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.clients import Result, check_search_response, run_clients
from devtools.fakes import FaultES, FaultModel, es_error_body
from devtools.procfs import rss_bytes
from es_integration.local_es import LocalES, free_port
from tests.conftest import ESTarget
from tests.support.apps import running_sidecar
from tests.support.reliability import es_error, overrides, sidecar_process
from tests.support.search import SAMPLE, base_config, multi_match

QUERY = "library card renew borrow books online account"
MSEARCH = (
    json.dumps({"index": "faults"})
    + "\n"
    + json.dumps(multi_match(QUERY, size=5))
    + "\n"
    + json.dumps({"index": "faults"})
    + "\n"
    + json.dumps({"query": {"match_all": {}}, "size": 0})
    + "\n"
).encode()
NDJSON = {"Content-Type": "application/x-ndjson"}


def _config(es_url: str, model: FaultModel, **over: Any) -> dict[str, Any]:
    return base_config(
        es_url,
        model={"name": model.url},
        rerank={"budget_ms": 1000, "annotate": True},
        tuning={"remote": {"read_timeout_s": 2.0}},
        **over,
    )


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_es_error_statuses_pass_through_on_intercepted_paths(
    fault_es: FaultES, fault_model: FaultModel, status: int
) -> None:
    fault_es.mode, fault_es.status = "status", status
    auth = {"Authorization": "ApiKey a2V5"}
    async with (
        running_sidecar(_config(fault_es.url, fault_model)) as sc,
        aiohttp.ClientSession() as s,
    ):
        cases = [
            ("POST", "/faults/_search", {"json": multi_match(QUERY)}, "skipped; reason=es_error"),
            ("POST", "/faults/_search", {"json": {"size": 0}}, "skipped; reason=size_zero"),
            ("POST", "/_msearch", {"data": MSEARCH, "headers": NDJSON}, "skipped; reason=es_error"),
            ("GET", "/faults/_count", {}, None),
        ]
        for method, path, kw, header in cases:
            kw.setdefault("headers", {}).update(auth)
            async with s.request(method, sc.url + path, **kw) as r:
                assert r.status == status, path
                body = await r.json()
                assert r.headers.get("X-Rerank") == header, path
                # Exactly ES's body, even where it quotes the credentials back.
                assert body == es_error_body(
                    status, f"rejected ({status}) for credentials [ApiKey a2V5]"
                )
    assert fault_model.calls == 0, "ES said no: the model is never asked"


async def test_msearch_item_errors_stay_per_item(
    es: ESTarget, sample_index: str, fault_model: FaultModel
) -> None:
    """A sub-search ES refuses (a missing index) keeps ES's item; the others are reranked."""
    data = (
        json.dumps({"index": "no-such-index-here"})
        + "\n"
        + json.dumps(multi_match(QUERY))
        + "\n"
        + json.dumps({"index": SAMPLE})
        + "\n"
        + json.dumps(multi_match(QUERY))
        + "\n"
    ).encode()
    async with running_sidecar(_config(es.url, fault_model)) as sc, aiohttp.ClientSession() as s:
        async with s.post(f"{es.url}/_msearch", data=data, headers=NDJSON) as r:
            direct = await r.json()
        async with s.post(f"{sc.url}/_msearch", data=data, headers=NDJSON) as r:
            assert r.status == 200
            via = await r.json()
            assert r.headers["X-Rerank"] == "applied"
    assert via["responses"][0] == direct["responses"][0]
    assert via["responses"][1]["_rerank"]["status"] == "applied"


async def test_slow_es_is_504_on_the_rerank_path_and_msearch(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    fault_es.mode, fault_es.delay_s = "slow", 2.0
    config = _config(fault_es.url, fault_model, es={"timeouts": {"read_s": 0.5}})
    async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:
        for method, path, kw in [
            ("POST", "/faults/_search", {"json": multi_match(QUERY)}),
            ("POST", "/faults/_search", {"json": {"size": 0}}),
            ("POST", "/_msearch", {"data": MSEARCH, "headers": NDJSON}),
        ]:
            # ES would answer after 2 s: a 504 is the sidecar's own read timeout (0.5 s).
            async with s.request(method, sc.url + path, **kw) as r:
                assert r.status == 504, path
                assert es_error(await r.json())[0] == "upstream_timeout_exception"
    assert fault_model.calls == 0


@pytest.mark.parametrize("mode", ["truncated", "invalid_json"])
async def test_broken_es_answers_on_the_rerank_path(
    fault_es: FaultES, fault_model: FaultModel, mode: str
) -> None:
    fault_es.mode = mode
    async with (
        running_sidecar(_config(fault_es.url, fault_model)) as sc,
        aiohttp.ClientSession() as s,
    ):
        for path, kw in [
            ("/faults/_search", {"json": multi_match(QUERY)}),
            ("/_msearch", {"data": MSEARCH, "headers": NDJSON}),
        ]:
            async with s.post(sc.url + path, **kw) as r:
                if mode == "invalid_json":
                    # Not JSON is still ES's answer: the sidecar asks again with the
                    # client's own request and relays it, never a 502 of its own.
                    assert r.status == 200, path
                    assert r.headers["X-Rerank"] == "skipped; reason=unexpected_response"
                    assert (await r.read()).startswith(b'{"took": 1, "hits"'), path
                    continue
                assert r.status == 502, path
                kind, reason = es_error(await r.json())
                assert kind in ("upstream_bad_response_exception", "upstream_unavailable_exception")
                assert "Elasticsearch" in reason
        # A search that is not reranked is ES's answer, streamed: invalid JSON comes back
        # as ES sent it; a truncated one is cut off, never completed or replaced.
        if mode == "invalid_json":
            async with s.post(f"{sc.url}/faults/_search", json={"size": 0}) as r:
                assert r.status == 200
                assert (await r.read()).startswith(b'{"took": 1, "hits"')
        else:
            with pytest.raises(aiohttp.ClientPayloadError):
                async with s.post(f"{sc.url}/faults/_search", json={"size": 0}) as r:
                    await r.read()
        fault_es.mode = "ok"
        async with s.post(f"{sc.url}/faults/_search", json=multi_match(QUERY)) as r:
            assert (r.status, r.headers["X-Rerank"]) == (200, "applied")


async def test_es_down_at_start_then_up(
    fault_model: FaultModel, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The sidecar starts without ES, answers ES-shaped 502s (and not ready) meanwhile, and
    serves reranked searches as soon as ES is there, without a restart."""
    port = free_port()
    es_url = f"http://127.0.0.1:{port}"
    async with (
        sidecar_process(es_url, tmp_path / "sc.log", model=fault_model.url, wait_ready=False) as sc,
        aiohttp.ClientSession() as s,
    ):
        async with s.get(f"{sc.url}/_sidecar/health") as r:
            assert r.status == 200
        async with s.get(f"{sc.url}/_sidecar/ready") as r:
            assert r.status == 503
            assert (await r.json())["es"]["reachable"] is False
        for method, path, kw in [
            ("POST", "/down/_search", {"json": multi_match(QUERY)}),
            ("POST", "/_msearch", {"data": MSEARCH, "headers": NDJSON}),
            ("GET", "/_cat/indices", {}),
            ("PUT", "/down/_doc/1", {"json": {"title": QUERY}}),
        ]:
            async with s.request(method, sc.url + path, **kw) as r:
                assert r.status == 502, path
                assert es_error(await r.json())[0] == "upstream_unavailable_exception"

        local = await asyncio.to_thread(
            LocalES.start, port=port, data_dir=tmp_path_factory.mktemp("late-es")
        )
        try:
            async with s.put(f"{sc.url}/down/_doc/1?refresh=true", json={"title": QUERY}) as r:
                assert r.status in (200, 201)
            async with s.post(f"{sc.url}/down/_search", json=multi_match(QUERY)) as r:
                assert r.status == 200
                assert r.headers["X-Rerank"] == "applied"
            async with s.get(f"{sc.url}/_sidecar/ready") as r:
                assert r.status == 200
        finally:
            await asyncio.to_thread(local.stop)
        assert sc.proc.poll() is None


# A client connection that the outage cut mid-answer can be left for the garbage collector
# to close (aiohttp's transport, in this test's own process): a ResourceWarning from the
# client library, not something the sidecar (a process of its own) did.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_es_goes_down_mid_load_and_comes_back(
    fault_es_proxy: FaultES, fault_model: FaultModel, tmp_path: Path
) -> None:
    """50 clients; ES disappears (connection refused) and returns. Meanwhile: only
    ES-shaped 502s; before and after: 200s; the process never goes down. The outage is
    moved on by what the clients see, not by the clock: ES goes down once the load reaches
    it, comes back once the clients have met the outage, and the load ends once they have
    seen ES back."""
    clients = 50
    bodies = [multi_match(QUERY), multi_match("renew books", size=5), {"size": 0}]
    # When ES went down (the call began) and came back (the call returned), and what the
    # clients saw meanwhile and since, on one clock.
    loop = asyncio.get_running_loop()
    down_at = up_at = math.inf
    served, met_outage, saw_return = asyncio.Event(), asyncio.Event(), asyncio.Event()
    stop = asyncio.Event()
    unavailable = back = 0

    def during_outage(sent: float, done: float) -> bool:
        """The request was under way at some moment while ES was down."""
        return sent <= up_at and done >= down_at

    def pick(rng: random.Random) -> Any:
        kind = rng.choice(["search", "search", "msearch", "count"])

        async def go(session: aiohttp.ClientSession, base: str) -> Result:
            nonlocal unavailable, back
            sent = loop.time()
            if kind == "search":
                req = session.post(f"{base}/{SAMPLE}/_search", json=rng.choice(bodies))
            elif kind == "msearch":
                data = MSEARCH.replace(b'"faults"', f'"{SAMPLE}"'.encode())
                req = session.post(f"{base}/_msearch", data=data, headers=NDJSON)
            else:
                req = session.get(f"{base}/{SAMPLE}/_count")
            try:
                async with req as r:
                    body = await r.read()
            except aiohttp.ClientPayloadError:
                # A streamed answer cut off by ES going away: the connection is closed so
                # that the client cannot take a partial answer for a whole one.
                done = loop.time()
                problem = None if during_outage(sent, done) else "cut off outside outage"
                return Result(kind, 0, done, "", problem, explained="cut off by the outage")
            done = loop.time()
            problem = None
            if r.status == 502:
                kind_ = json.loads(body)["error"]["type"]
                if kind_ != "upstream_unavailable_exception":
                    problem = f"502 {kind_}"
                elif not during_outage(sent, done):
                    problem = "502 outside the outage"
                unavailable += 1
                if unavailable >= clients:
                    met_outage.set()
            elif kind == "count":
                problem = None if r.status == 200 else f"status {r.status}"
            else:
                problem = check_search_response(
                    r.status, r.headers, body, msearch=kind == "msearch"
                )
            if r.status == 200 and down_at == math.inf:
                served.set()
            if r.status == 200 and sent > up_at:
                back += 1
                if back >= clients:
                    saw_return.set()
            return Result(kind, r.status, done, r.headers.get("X-Rerank", ""), problem)

        return go

    async def outage() -> None:
        nonlocal down_at, up_at
        try:
            async with asyncio.timeout(120):
                # The load is under way: as many requests as there are clients reached ES,
                # and a client has had its answer (50 requests can all be in flight at once).
                await fault_es_proxy.requests_reached(fault_es_proxy.requests + clients)
                await served.wait()
                down_at = loop.time()
                await fault_es_proxy.go_down()
                await met_outage.wait()  # as many 502s as there are clients
                await fault_es_proxy.come_back()
                up_at = loop.time()
                await saw_return.wait()  # as many 200s, sent after ES came back
        except TimeoutError:
            raise AssertionError(
                f"the outage never moved on: {unavailable} 502s, {back} 200s since ES came back"
            ) from None
        finally:
            stop.set()

    async with sidecar_process(
        fault_es_proxy.url, tmp_path / "sc.log", model=fault_model.url
    ) as sc:
        flip = asyncio.create_task(outage())
        tally = await run_clients(sc.url, pick, stop=stop, concurrency=clients)
        await flip
        assert sc.proc.poll() is None
    assert not tally.unexplained(), tally.unexplained().most_common(5)
    statuses = {r.status for r in tally.results}
    assert statuses <= {0, 200, 502} and {200, 502} <= statuses, statuses
    assert any(r.status == 200 and r.latency_s < down_at for r in tally.results)
    # ES back: the 502s end, and everything answered after the last one is a 200.
    last = max(r.latency_s for r in tally.results if r.status == 502)
    after = [r for r in tally.results if r.latency_s > last]
    assert after and all(r.status == 200 for r in after)


HUGE = 256 * 1024 * 1024


async def test_huge_es_answers_bounded_memory(
    fault_es: FaultES, fault_model: FaultModel, tmp_path: Path
) -> None:
    """A 256 MiB ES answer: pass-through and searches that are not reranked stream it (the
    sidecar's RSS barely moves); on the rerank path, where the answer must be read, the read
    stops at tuning.es.max_response_bytes and ES's answer to the client's own request is
    streamed."""
    config = overrides(tuning__es__max_response_bytes=8 * 1024 * 1024)
    async with (
        sidecar_process(
            fault_es.url, tmp_path / "sc.log", model=fault_model.url, config=config
        ) as sc,
        aiohttp.ClientSession() as s,
    ):
        fault_es.mode, fault_es.huge_bytes = "huge", HUGE
        base_rss = rss_bytes(sc.proc.pid)
        peak = base_rss

        async def drain(method: str, path: str, **kw: Any) -> int:
            nonlocal peak
            got = 0
            async with s.request(method, sc.url + path, **kw) as r:
                assert r.status == 200
                async for chunk in r.content.iter_chunked(1 << 20):
                    got += len(chunk)
                    peak = max(peak, rss_bytes(sc.proc.pid))
            return got

        assert await drain("GET", "/huge/_doc/1") >= HUGE
        assert await drain("POST", "/huge/_search", json={"size": 0}) >= HUGE
        assert peak - base_rss < 48 * 2**20, f"RSS grew {(peak - base_rss) / 2**20:.0f} MiB"

        for path, kw in [
            ("/huge/_search", {"json": multi_match(QUERY)}),
            ("/_msearch", {"data": MSEARCH, "headers": NDJSON}),
        ]:
            # Too large to hold for reranking: the read stops at
            # tuning.es.max_response_bytes and ES's answer to the client's own request is
            # streamed instead (no 502 that ES would not give).
            async with s.post(sc.url + path, **kw) as r:
                assert (r.status, r.headers["X-Rerank"]) == (200, "skipped; reason=memory")
                got = 0
                async for chunk in r.content.iter_chunked(1 << 20):
                    got += len(chunk)
                    peak = max(peak, rss_bytes(sc.proc.pid))
            assert got >= HUGE
        assert peak - base_rss < 64 * 2**20, f"RSS grew {(peak - base_rss) / 2**20:.0f} MiB"
        async with s.get(f"{sc.url}/_sidecar/health") as r:
            assert r.status == 200
    assert fault_model.calls == 0


async def test_response_cache_hit_says_cached_in_the_body_too(
    fault_es: FaultES, fault_model: FaultModel
) -> None:
    """Found by the soak: a response-cache hit said ``X-Rerank: cached`` but its body still
    carried ``_rerank.status: applied`` from the first answer."""
    config = _config(fault_es.url, fault_model)
    config["rerank"]["response_cache"] = {"enabled": True}
    async with running_sidecar(config) as sc, aiohttp.ClientSession() as s:
        seen = []
        for _ in range(2):
            async with s.post(f"{sc.url}/faults/_search", json=multi_match(QUERY)) as r:
                body = await r.json()
                seen.append((r.headers["X-Rerank"], body["_rerank"]["status"]))
    assert seen == [("applied", "applied"), ("cached", "cached")]
    assert fault_model.calls == 1
