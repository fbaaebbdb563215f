"""A client over its share of the event loop's CPU waits, at most its budget, and that wait
comes off the budget; other clients' searches are not held back (real sockets, each client
from its own loopback address)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from elasticsearch import Elasticsearch

from devtools.fakes import FaultModel
from sidecar.keys import SEARCH
from tests.conftest import ESTarget
from tests.support.apps import running_sidecar
from tests.support.search import SAMPLE, base_config, multi_match

QUERY = "library card renew borrow books online account"
ORDINARY, HEAVY = "127.0.0.3", "127.0.0.2"


async def _post(url: str, source: str, path: str, data: bytes, ctype: str) -> tuple[int, Any, str]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as s,
        s.post(f"{url}{path}", data=data, headers={"Content-Type": ctype}) as r,
    ):
        return r.status, await r.json(), r.headers.get("X-Rerank", "")


async def _search(url: str, source: str) -> tuple[int, Any, str]:
    body = json.dumps(multi_match(QUERY, size=10)).encode()
    return await _post(url, source, f"/{SAMPLE}/_search", body, "application/json")


def _ids(body: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in body["hits"]["hits"]]


async def test_a_client_over_its_share_waits_its_budget_and_others_do_not(
    es: ESTarget, sample_index: str, fake_reranker: FaultModel
) -> None:
    config = base_config(
        es.url,
        model={"name": fake_reranker.url},
        rerank={"budget_ms": 300, "cache": {"enabled": False}},
        tuning={"remote": {"read_timeout_s": 5.0}},
    )
    direct = Elasticsearch(es.url).search(index=SAMPLE, body=multi_match(QUERY, size=10)).body
    async with running_sidecar(config) as sc:
        share = sc.app[SEARCH].loop
        assert (await _search(sc.url, ORDINARY))[2] == "applied"
        assert f"ip:{ORDINARY}" in share.ledger

        # A heavy client's _msearch is metered: the CPU it cost the loop is charged.
        before = share.busy()
        line = json.dumps(multi_match(QUERY, size=10)).encode()
        payload = b"".join(b"{}\n" + line + b"\n" for _ in range(5))
        status, _, _ = await _post(
            sc.url, HEAVY, f"/{SAMPLE}/_msearch", payload, "application/x-ndjson"
        )
        assert status == 200
        assert share.busy() > before, "its CPU was charged"
        assert f"ip:{HEAVY}" in share.ledger

        # Owing more than a budget can pay back, its next search waits the whole budget:
        # no budget is left, so it goes to ES as sent (but for the rerank object) and ES's
        # answer is streamed back, nothing decoded.
        share.charge(f"ip:{HEAVY}", 10.0)
        assert share.owed(f"ip:{HEAVY}") > 0.3, "more than the budget"
        assert share.owed(f"ip:{ORDINARY}") == 0
        calls = fake_reranker.calls
        status, body, header = await _search(sc.url, HEAVY)
        assert (status, header) == (200, "skipped; reason=cpu_share")
        assert body == direct | {"took": body["took"]}, "ES's own answer to the page asked for"
        assert fake_reranker.calls == calls, "the model was not asked"
        status, body, header = await _post(
            sc.url, HEAVY, f"/{SAMPLE}/_msearch", payload, "application/x-ndjson"
        )
        assert (status, header) == (200, "skipped; reason=cpu_share")
        assert [_ids(r) for r in body["responses"]] == [_ids(direct)] * 5
        assert all("_rerank" not in r for r in body["responses"])

        # The other client's searches are its own: reranked as before.
        status, body, header = await _search(sc.url, ORDINARY)
        assert (status, header) == (200, "applied")
