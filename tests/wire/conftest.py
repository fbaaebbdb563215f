"""The differential suite's shared setup: one corpus, wire tap, fake model and sidecar per
server, for the whole session. (Its summary, printed at the end of the pytest output, is
tests/support/tally.py's.)"""

from __future__ import annotations

import json
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
