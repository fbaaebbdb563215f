"""The differential suite's shared setup (one corpus, wire tap, fake model and sidecar per
server, for the whole session) and its summary: case counts per server and group, the
rerank outcomes, and every difference found, printed at the end of the pytest output."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from devtools.fakes import FaultModel
from tests.conftest import ESTarget
from tests.support.apps import RunningSidecar, running_sidecar
from tests.support.search import base_config
from tests.support.wire_tap import WireTap, wire_tap
from tests.wire.cases import CRUD, INDEX, WINDOW, corpus_docs, mapping
from tests.wire.runner import Result

#: server -> results, filled by the tests, printed by pytest_terminal_summary.
REPORT: dict[str, list[Result]] = defaultdict(list)


@dataclass
class WireEnv:
    target: ESTarget
    tap: WireTap
    sidecar: RunningSidecar

    @property
    def server(self) -> str:
        return "opensearch (osmem-server)" if self.target.opensearch else "elasticsearch (noida-db)"


async def _load(url: str, opensearch: bool) -> None:
    async with aiohttp.ClientSession() as s:
        for name in (INDEX, CRUD):
            async with s.delete(f"{url}/{name}") as r:
                await r.read()
        async with s.put(f"{url}/{INDEX}", json=mapping(opensearch)) as r:
            assert r.status == 200, await r.text()
        async with s.put(f"{url}/{CRUD}", json={"mappings": {"properties": {}}}) as r:
            assert r.status == 200, await r.text()
        lines = []
        for doc in corpus_docs():
            lines += [
                json.dumps({"index": {"_index": INDEX, "_id": str(doc["pk"])}}),
                json.dumps(doc),
            ]
        data = ("\n".join(lines) + "\n").encode()
        headers = {"Content-Type": "application/x-ndjson"}
        async with s.post(f"{url}/_bulk?refresh=true", data=data, headers=headers) as r:
            body = await r.json()
            assert r.status == 200 and not body["errors"], body


@pytest.fixture(scope="session")
async def wire_env(es: ESTarget) -> AsyncIterator[WireEnv]:
    await _load(es.url, es.opensearch)
    async with (
        FaultModel() as model,
        wire_tap(es.url) as tap,
        running_sidecar(
            base_config(
                tap.url,
                model={"name": model.url},
                rerank={"window": WINDOW},
                rollout={"default": "on"},
            )
        ) as sc,
    ):
        yield WireEnv(es, tap, sc)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    tr = terminalreporter
    tr.section("wire differential suite")
    for server, results in sorted(REPORT.items()):
        diffs = [r for r in results if r.diffs]
        groups = Counter(r.group for r in results)
        outcomes = Counter(
            "reranked" if r.outcome.split(";")[0] in ("applied", "cached") else r.outcome
            for r in results
        )
        tr.write_line(
            f"{server}: {len(results)} cases, {len(diffs)} with differences other than "
            "reranked order"
        )
        tr.write_line("  by group: " + ", ".join(f"{g} {n}" for g, n in sorted(groups.items())))
        tr.write_line("  outcomes: " + ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items())))
        for r in diffs[:20]:
            tr.write_line(f"  DIFFERENCE {r.group}/{r.name}: {'; '.join(r.diffs.items)[:400]}")
