"""The benchmark suite's parts: stand-in servers, interleaved load, tables, the report."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from devtools.bench import suite
from devtools.bench.contenders import LoadTarget, interleaved, latency_table
from devtools.bench.results import Goal, Section, summary_table
from devtools.fakes import FaultES, FaultModel, passage
from devtools.procfs import cpu_seconds, own_cpu_seconds


async def test_the_stub_es_answers_size_distinct_hits() -> None:
    async with FaultES(hits=20) as server, aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/bench/_search", json={"size": 15}) as r:
            hits = (await r.json())["hits"]["hits"]
        async with session.post(f"{server.url}/_search", json={"size": 50}) as r:
            assert len((await r.json())["hits"]["hits"]) == 20
        async with session.get(f"{server.url}/") as r:
            assert (await r.json())["version"]["number"].startswith("8.")
    assert len(hits) == 15
    assert len({h["_source"]["body"] for h in hits}) == 15
    assert hits[3]["_source"]["body"] == passage(3)
    assert 25 <= len(passage(3).split()) <= 110


async def test_the_fault_server_modes() -> None:
    for mode, status in (("ok", 200), ("error", 500)):
        async with FaultModel(mode=mode) as server:
            body = {"query": "paris", "documents": ["paris is big", "bananas"]}
            async with (
                aiohttp.ClientSession() as session,
                session.post(server.url, json=body) as r,
            ):
                assert r.status == status
                if status == 200:
                    results = (await r.json())["results"]
                    assert results[0]["relevance_score"] > results[1]["relevance_score"]


async def test_interleaved_rounds_measure_every_contender() -> None:
    async with FaultES(hits=5, mode="slow", delay_s=0.001) as server:
        url = f"{server.url}/bench/_search"
        bodies = [b'{"size": 5}']
        targets = [
            LoadTarget("base", url, lambda _: bodies, 2, 20, pid=os.getpid()),
            LoadTarget("other", url, lambda r: bodies * (r + 2), 1, 10, pid=None),
        ]
        await interleaved(targets, rounds=3, warm=4)
    base, other = targets
    assert base.requests == 60 and other.requests == 30
    assert len(base.round_walls) == 3
    assert base.result.pct(50) >= 0.001  # the stub's 1 ms latency is measured
    assert base.server_us is not None and other.server_us is None
    table = latency_table(targets)
    assert table.count("\n") == 3
    assert "| other | 1 | 30 | 0 |" in table
    assert "×" in table.splitlines()[3]


def test_the_summary_says_what_was_missed_and_why() -> None:
    sec = Section(9, "demo")
    sec.goals += [
        Goal("9 fast", "≤ 1 ms", "0.5 ms", True),
        Goal("9 slow", "≤ 1 ms", "3 ms", False, "CPU-bound"),
        Goal("9 info", "none", "2×", None),
    ]
    table = summary_table([sec])
    assert "| 9 fast | ≤ 1 ms | 0.5 ms | met |  |" in table
    assert "| 9 slow | ≤ 1 ms | 3 ms | **missed** | CPU-bound |" in table
    assert "| 9 info | none | 2× | n/a |" in table


def test_cpu_time_of_a_process() -> None:
    assert (cpu_seconds(os.getpid()) or 0) > 0
    assert cpu_seconds(None) is None
    assert own_cpu_seconds() > 0


@pytest.mark.slow
def test_the_fault_scenario_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- BEGIN eval x -->\nkept\n<!-- END eval x -->\n")
    assert suite.main(["--quick", "--only", "3", "--out", str(out), "--write-docs", str(docs)]) == 0
    text = out.read_text()
    assert "### 3. A hanging model" in text
    assert "Concurrency 16" in text and "Concurrency 1," in text
    assert "| sidecar, model hangs | 16 |" in text
    assert "fallback" in text and "Load average before" in text
    updated = docs.read_text()
    assert updated.index("<!-- BEGIN bench -->") < updated.index("<!-- BEGIN eval x -->")
    assert "kept" in updated
