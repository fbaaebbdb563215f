"""The load scenarios' parts (bench 8-10) and the as-served report: what they count and
how they report it, against in-process stand-ins. No speed is asserted here."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from devtools.bench.docs_merge import current_block, merge, parse, row_number, with_provenance
from devtools.bench.results import Goal, Section
from devtools.bench.scenarios import slow_clients as slow
from devtools.bench.scenarios.neighbour import api_request, msearch_request
from devtools.bench.scenarios.overload import (
    Req,
    Sample,
    Segment,
    capacity_of,
    metric_values,
    paced,
    read_answer,
)
from devtools.bench.suite import document
from devtools.eval import run as harness
from devtools.eval.data import read_eval_set
from devtools.eval.report import served_comparisons, served_table, write_report
from devtools.fakes import FaultES

# --- the load generator and what it counts -------------------------------------------------


async def test_a_paced_load_keeps_its_schedule_and_stops_when_told() -> None:
    async with FaultES(hits=5) as es:
        reqs = [Req("/bench/_search", b'{"size": 3}')]
        seg = await paced(es.url, reqs, clients=2, rate=40, duration_s=0.5)
        # Requests due in [0, 0.5) at 40/s: 20 of them, none early.
        assert seg.n == 20
        assert all(s.status == 200 for s in seg.samples)
        assert sorted(round(s.sent_s * 40) for s in seg.samples) == list(range(20))
        assert all(len(s.ids) == 3 for s in seg.samples)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, stop.set)
        free = await paced(es.url, reqs, clients=1, stop=stop)
        assert free.n > 0 and free.wall_s < 2
    with pytest.raises(ValueError):
        await paced("http://127.0.0.1:9", reqs, clients=1)


async def test_requests_without_an_answer_are_errors_not_lost() -> None:
    seg = await paced("http://127.0.0.1:9", [Req("/x", b"{}")], clients=1, count=2, timeout_s=2)
    assert seg.n == 2 and seg.errors == 2
    assert {s.status for s in seg.samples} == {0}


def test_shares_k_and_ndcg_of_a_segment() -> None:
    seg = Segment("x", wall_s=2.0)
    seg.samples = [
        Sample("q1", 200, 0.1, header="applied", k=50, ids=("d1", "d2")),
        Sample("q1", 200, 0.1, header="applied; window=20", k=20, ids=("d2", "d1")),
        Sample("q2", 200, 0.1, header="fallback; reason=budget", k=0, ids=("d3",)),
        Sample("q2", 503, 0.1),
    ]
    assert seg.share() == 0.5 and seg.share(30) == 0.25
    assert seg.mean_k == 35
    assert seg.errors == 1
    assert capacity_of(seg, window=50) == pytest.approx(70 / 50 / 2.0)
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1}}
    # q1: nDCG 1 and 1/log2(3); q2: 1 (the 503 is not scored).
    assert seg.ndcg(qrels) == pytest.approx(((1 + 1 / 1.5849625) / 2 + 1) / 2, abs=1e-6)


def test_answers_are_read_by_kind() -> None:
    search = json.dumps({"hits": {"hits": [{"_id": "a"}]}, "_rerank": {"reranked": 7}})
    s = Sample("", 200, 0.0)
    read_answer(Req("/", b""), 200, search.encode(), s)
    assert s.ids == ("a",) and s.k == 7
    msearch = {"responses": [{"_rerank": {"reranked": 10}}, {"_rerank": {"status": "skipped"}}]}
    m = Sample("", 200, 0.0)
    read_answer(Req("/", b"", kind="msearch"), 200, json.dumps(msearch).encode(), m)
    assert (m.parts, m.k) == (2, 1)
    a = Sample("", 200, 0.0)
    read_answer(Req("/", b"", kind="api"), 200, b'{"results": [{}, {}, {}]}', a)
    assert a.parts == 3


def test_the_neighbours_requests() -> None:
    ms = msearch_request(300)
    lines = ms.body.decode().strip().split("\n")
    assert len(lines) == 600 and ms.kind == "msearch"
    assert ("Content-Type", "application/x-ndjson") in ms.headers
    api = api_request(1000)
    assert api.path == "/_sidecar/v1/rerank"
    assert len(json.loads(api.body)["documents"]) == 1000


def test_metric_values_of_a_prometheus_page() -> None:
    page = (
        "# HELP rerank_sidecar_breaker_state x\n"
        'rerank_sidecar_breaker_state{state="closed"} 0.0\n'
        'rerank_sidecar_breaker_state{state="open"} 1.0\n'
        "rerank_sidecar_queue_pairs 12.0\n"
    )
    assert metric_values(page, "rerank_sidecar_breaker_state") == {
        'state="closed"': 0.0,
        'state="open"': 1.0,
    }
    assert metric_values(page, "rerank_sidecar_queue_pairs") == {"": 12.0}


# --- slow clients ---------------------------------------------------------------------------


async def test_slow_clients_hold_their_connections_and_see_a_cut() -> None:
    """Against a server that answers 1 MiB and then holds the connection until told."""
    release = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (1 << 20))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    never, search, drip = slow.slow_clients(1, 1, 1)
    for c in (never, search, drip):
        await slow.open_slow(c, port)
        assert c.connected
    await asyncio.sleep(0.2)
    # Nothing was read: the answer waits in the buffers, the connection is open.
    assert slow.final_state(never) in ("open", "streaming")
    dripping = asyncio.create_task(slow.drip(drip, asyncio.get_running_loop().time()))
    release.set()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.2)
    assert slow.final_state(search) == "cut"
    await asyncio.wait_for(dripping, 5)
    assert drip.cut_s is not None and drip.dripped <= 1
    for c in (never, search, drip):
        assert c.sock is not None
        c.sock.close()


# --- docs: a partial run keeps the other scenarios ------------------------------------------


def _doc(sections: list[Section], argv: str) -> str:
    return document(
        sections, quick=True, started=86400.0, load_before="1", load_after="2", argv=argv
    )


def test_a_partial_run_replaces_only_its_scenarios(tmp_path: Path) -> None:
    full = _doc(
        [
            Section(1, "One", ["first body"], [Goal("1 a", "g", "m", True)]),
            Section(8, "Old eight", ["old body"], [Goal("8 b", "g", "m", False, "why")]),
        ],
        "",
    )
    partial = _doc([Section(8, "Eight", ["new body"], [Goal("8 c", "g", "m2", True)])], "x")
    merged = merge(full, partial, {8}, "_Measured now_")
    doc = parse(merged)
    assert sorted(doc.sections) == [1, 8]
    assert "new body" in doc.sections[8] and "old body" not in merged
    assert doc.sections[8].split("\n")[2] == "_Measured now_"
    # The kept section says which run measured it: the earlier run's paragraph.
    assert doc.sections[1].split("\n")[2].startswith("_Measured 1970-01-02")
    assert [row_number(r) for r in doc.rows] == [1, 8]
    assert "| 8 c |" in merged and "| 8 b |" not in merged
    assert "more than one run" in merged
    again = merge(merged, partial, {8}, "_Measured later_")
    assert parse(again).sections[1] == doc.sections[1]
    assert again.count("_Measured later_") == 1
    # A section that reports its own run keeps only its own paragraph.
    own = "### 6. Six\n\nMeasured 2026-01-01 by itself.\n\nbody"
    assert with_provenance(own, "_Measured x_") == own
    assert with_provenance(own.replace("\n\nM", "\n\n_Measured x_\n\nM", 1), "") == own
    # Nothing kept: the partial run's own document.
    assert merge(partial, partial, {8}, "_x_") == partial
    path = tmp_path / "benchmarks.md"
    path.write_text(f"# B\n\n<!-- BEGIN bench -->\n{full}\n<!-- END bench -->\n")
    assert current_block(path) == full.strip("\n")


# --- the eval harness: as served beside the ceiling -----------------------------------------


def test_as_served_leaves_the_budget_and_timeouts_as_configured(tmp_path: Path) -> None:
    settings = harness.Settings(windows=(20, 100))
    ceiling = settings.server_variants()
    served = settings.served_variants()
    assert [s.ceiling() for s in served] == ceiling and all(s.as_served for s in served)
    config = served[0].config(max_window=100)
    assert "budget_ms" not in config["rerank"] and "es" not in config and "tuning" not in config
    assert ceiling[0].config(max_window=100)["rerank"]["budget_ms"] == harness.EVAL_BUDGET_MS
    assert ceiling[0].config(max_window=100)["tuning"] == {"limits": {"max_window": 500}}
    assert served[0].config(max_window=800)["tuning"] == {"limits": {"max_window": 800}}
    assert settings.served_budget_ms() == 1500
    custom = tmp_path / "c.yaml"
    custom.write_text("rerank:\n  budget_ms: 700\n")
    assert harness.Settings(config_file=custom).served_budget_ms() == 700
    assert harness.Settings(sidecar_url="http://x").served_variants() == []
    assert harness.Settings(as_served=False).served_variants() == []
    label = harness.run_label(served[0], harness.RequestVariant(100), settings)
    assert label == "W=100, as served"


def _beir(path: Path) -> Path:
    path.mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(3)]
    (path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    queries = [{"_id": "q1", "text": "one"}, {"_id": "q2", "text": "two"}]
    (path / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (path / "qrels.tsv").write_text("q1\td1\t1\nq2\td2\t1\n")
    return path


def test_the_report_puts_as_served_beside_the_ceiling(tmp_path: Path) -> None:
    data = read_eval_set(_beir(tmp_path / "set"))
    settings = harness.Settings(dataset=data.path, windows=(20,), permutations=50)
    bm25 = {"q1": harness.Ranked(["d0", "d1"]), "q2": harness.Ranked(["d0", "d2"])}
    best = {
        "q1": harness.Ranked(["d1", "d0"], "applied", 20, 0.5),
        "q2": harness.Ranked(["d2", "d0"], "applied", 20, 0.6),
    }
    served = {
        "q1": harness.Ranked(["d1", "d0"], "applied; window=12", 12, 1.2),
        "q2": harness.Ranked(["d0", "d2"], "fallback; reason=budget", 0, 1.4),
    }
    request = harness.RequestVariant(20)
    server = harness.ServerVariant(harness.BUNDLED_MODEL)
    ceiling = harness._result("W=20", server, request, data, bm25, best, 9.0, settings)
    as_served = harness._result(
        "W=20, as served", server.served(), request, data, bm25, served, 3.0, settings
    )
    report = harness.EvalReport(
        settings=settings,
        data=data,
        index="set",
        es_url="http://es",
        sidecar_url=None,
        baseline_top={},
        baseline_seconds=0.1,
        runs=[ceiling],
        started=0.0,
        finished=1.0,
        as_served=[as_served],
        served_budget_ms=1500.0,
    )
    (c,) = served_comparisons(report)
    assert c.ceiling == pytest.approx(1.0) and c.reranked == 1 and c.mean_k == 12
    assert c.at_least_bm25 and c.near_ceiling is False
    table = served_table(report)
    assert "| W=20, as served | 1500 ms |" in table and "1/2" in table
    assert "applied; window=K 1" in table and "**missed**" in table
    paths = write_report(report, tmp_path / "out")
    assert "As served" in paths.table
    results = json.loads(paths.json.read_text())
    assert results["as_served"]["budget_ms"] == 1500.0
    assert results["as_served"]["runs"][0]["per_query"]["q1"]["reranked"] == 12
    assert results["as_served"]["comparisons"][0]["within_goal_of_ceiling"] is False
    assert len(results["runs"]) == 1
