"""Routing: only the searches the sidecar intercepts reach it through the split front
(GET and POST on /_search, /{index}/_search, /_msearch, /{index}/_msearch, sidecar/routes.py);
everything else goes straight to ES, which the sidecar's access log and the answer's headers
show (the sidecar marks every answer it writes with X-Request-Id and Server-Timing, every
search with X-Rerank)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from devtools.bench.scenarios.split_front import CONF, SplitFront, host_port, render
from devtools.fakes import FaultModel
from es_integration.local_es import free_port
from tests.conftest import ESTarget
from tests.split_front.conftest import AccessLog, StartFront
from tests.split_front.support import call, ndjson
from tests.support.apps import RunningSidecar, running_sidecar
from tests.support.search import SAMPLE, base_config, multi_match

SCRATCH = "split-front-scratch"
BACKUP = "# server elasticsearch:9200 backup;"
QUERY = multi_match("renew a library card", size=5)


@dataclass
class Routed:
    front: SplitFront
    sidecar: RunningSidecar
    es_url: str


@pytest.fixture(scope="module")
async def routed(
    es: ESTarget, sample_index: str, nginx: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Routed]:
    answer = await call(
        es.url,
        "POST",
        "/_bulk?refresh=true",
        data=ndjson({"index": {"_index": SCRATCH, "_id": "1"}}, {"title": "one"}),
        headers=[("Content-Type", "application/x-ndjson")],
    )
    assert answer.status == 200 and answer.json()["errors"] is False
    async with (
        FaultModel() as fake,
        running_sidecar(base_config(es.url, model={"name": fake.url})) as sc,
    ):
        with SplitFront.run(
            tmp_path_factory.mktemp("nginx"), es=host_port(es.url), sidecar=host_port(sc.url)
        ) as front:
            yield Routed(front, sc, es.url)
    # The session's ES is shared with other tests: leave no index behind.
    assert (await call(es.url, "DELETE", f"/{SCRATCH}")).status == 200


def test_only_the_addresses_of_the_shipped_file_are_replaced() -> None:
    shipped = CONF.read_text(encoding="utf-8").splitlines()
    rendered = render("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3").splitlines()
    changed = [(a.strip(), b.strip()) for a, b in zip(shipped, rendered, strict=True) if a != b]
    assert changed == [
        ("server elasticsearch:9200;", "server 127.0.0.1:1;"),
        ("server rerank-sidecar:9280;", "server 127.0.0.1:2;"),
        ("listen 9200;", "listen 127.0.0.1:3;"),
    ]


SEARCHES: list[tuple[str, str, Any]] = [
    ("POST", f"/{SAMPLE}/_search", QUERY),
    ("GET", f"/{SAMPLE}/_search", QUERY),
    ("GET", f"/{SAMPLE}/_search?q=library&size=3", None),
    ("POST", "/_search?size=3", QUERY),
    ("GET", "/_search", None),
    ("POST", "/_msearch", ndjson({"index": SAMPLE}, QUERY)),
    ("POST", f"/{SAMPLE}/_msearch", ndjson({}, QUERY)),
    ("GET", f"/{SAMPLE}/_msearch", ndjson({}, QUERY)),
]


@pytest.mark.parametrize(("method", "path", "body"), SEARCHES)
async def test_searches_reach_the_sidecar(
    routed: Routed, access_log: AccessLog, method: str, path: str, body: Any
) -> None:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"body": body}
    if isinstance(body, bytes):
        kwargs["headers"] = [("Content-Type", "application/x-ndjson")]
    answer = await call(routed.front.url, method, path, **kwargs)
    assert answer.status == 200, answer.body[:300]
    assert answer.rerank is not None, "no X-Rerank: the sidecar did not answer it"
    assert access_log.paths() == [(method, path.split("?")[0])]


PASS_THROUGH: list[tuple[str, str, Any]] = [
    ("POST", "/_bulk", ndjson({"index": {"_index": SCRATCH, "_id": "b"}}, {"title": "b"})),
    ("GET", f"/{SCRATCH}/_doc/1", None),
    ("PUT", f"/{SCRATCH}/_doc/2?refresh=true", {"title": "two"}),
    ("GET", "/_cat/indices?v", None),
    ("POST", f"/{SAMPLE}/_count", {"query": {"match": {"title": "library"}}}),
    ("GET", f"/{SAMPLE}/_count", None),
    ("POST", "/_search/scroll", {"scroll": "1m", "scroll_id": "not-a-scroll"}),
    ("DELETE", "/_search/scroll", {"scroll_id": ["not-a-scroll"]}),
    ("POST", "/_search/template", {"source": {"query": {"match_all": {}}}}),
    ("POST", f"/{SAMPLE}/_msearch/template", ndjson({}, {"source": {"query": {}}})),
    ("GET", f"/{SAMPLE}/_search_shards", None),
    ("PUT", f"/{SAMPLE}/_search", QUERY),
    ("DELETE", f"/{SAMPLE}/_search", None),
    ("HEAD", f"/{SAMPLE}/_search", None),
    ("HEAD", f"/{SAMPLE}", None),
    ("GET", f"/{SAMPLE}/_mapping", None),
    ("GET", "/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PASS_THROUGH)
async def test_everything_else_goes_straight_to_es(
    routed: Routed, access_log: AccessLog, method: str, path: str, body: Any
) -> None:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"body": body}
    if isinstance(body, bytes):
        kwargs["headers"] = [("Content-Type", "application/x-ndjson")]
    answer = await call(routed.front.url, method, path, **kwargs)
    assert answer.sidecar_marks() == [], answer.headers
    assert access_log.paths() == [], "the sidecar saw it"
    if method in ("GET", "HEAD"):
        # ES's own answer, as ES gives it to a client talking to it directly.
        direct = await call(routed.es_url, method, path, **kwargs)
        assert (answer.status, answer.body) == (direct.status, direct.body)
    else:
        assert answer.status < 500, answer.body[:300]


async def test_a_scroll_starts_at_the_sidecar_and_continues_at_es(
    routed: Routed, access_log: AccessLog
) -> None:
    first = await call(
        routed.front.url, "POST", f"/{SAMPLE}/_search?scroll=1m", body=multi_match("book", size=2)
    )
    assert first.status == 200 and first.rerank is not None
    scroll_id = first.json()["_scroll_id"]
    more = await call(
        routed.front.url, "POST", "/_search/scroll", body={"scroll": "1m", "scroll_id": scroll_id}
    )
    assert more.status == 200 and more.sidecar_marks() == []
    assert more.json()["hits"]["hits"], "the next page came from ES"
    assert access_log.paths() == [("POST", f"/{SAMPLE}/_search")]


#: Spellings of a search path: whatever the sidecar itself intercepts, nginx must send to it.
#: (nginx sending it a path it does not intercept is harmless: the sidecar passes it on.)
SPELLINGS = [
    f"/{SAMPLE}/_search?pretty",
    f"/{SAMPLE},{SAMPLE}/_search",
    "/_all/_search",
    "/sample-*/_search",
    "/_sea%72ch",
    "/%5Fsearch",
    "/sample%2Drerank/_search",
    "/_msearch?max_concurrent_searches=1",
    "//_search",
    f"/{SAMPLE}/_search/",
    "/_search%0A",
    "/x/../_search",
]


@pytest.mark.parametrize("path", SPELLINGS)
async def test_nginx_never_takes_a_search_away_from_the_sidecar(
    routed: Routed, access_log: AccessLog, path: str
) -> None:
    data = ndjson({"index": SAMPLE}, QUERY) if "_msearch" in path else None
    body = None if data else QUERY
    headers = [("Content-Type", "application/x-ndjson")] if data else None
    direct = await call(routed.sidecar.url, "POST", path, body=body, data=data, headers=headers)
    intercepted = direct.rerank is not None
    access_log.take()
    via = await call(routed.front.url, "POST", path, body=body, data=data, headers=headers)
    if intercepted:
        assert via.rerank is not None, "nginx sent a search the sidecar reranks straight to ES"
    if via.sidecar_marks():
        assert len(access_log.take()) == 1
    assert via.status == direct.status


def test_the_test_config_is_the_shipped_one(routed: Routed) -> None:
    rendered = (routed.front.dir / "split-front.conf").read_text(encoding="utf-8")
    assert rendered == render(
        host_port(routed.es_url), host_port(routed.sidecar.url), f"127.0.0.1:{routed.front.port}"
    )
    assert (routed.front.dir / "nginx.conf").read_text().count("include split-front.conf") == 1


async def test_without_a_sidecar_searches_fail_with_502_by_default(
    es: ESTarget, sample_index: str, split_front: StartFront
) -> None:
    front = split_front(es.url, f"http://127.0.0.1:{free_port()}", errors=True)
    answer = await call(front.url, "POST", f"/{SAMPLE}/_search", body=QUERY)
    assert answer.status == 502
    # Pass-through traffic does not depend on the sidecar at all.
    assert (await call(front.url, "GET", f"/{SAMPLE}/_count")).status == 200


async def test_the_optional_backup_line_sends_searches_to_es_when_no_sidecar_answers(
    es: ESTarget, sample_index: str, split_front: StartFront
) -> None:
    """The commented-out ``server elasticsearch:9200 backup;``, uncommented: fail open."""
    shipped = CONF.read_text(encoding="utf-8")
    assert shipped.count(BACKUP) == 1
    conf = shipped.replace(BACKUP, f"server {host_port(es.url)} backup;")
    front = split_front(es.url, f"http://127.0.0.1:{free_port()}", conf=conf, errors=True)
    for _ in range(3):
        answer = await call(front.url, "POST", f"/{SAMPLE}/_search", body=QUERY)
        direct = await call(es.url, "POST", f"/{SAMPLE}/_search", body=QUERY)
        assert answer.status == 200 and answer.rerank is None
        assert [h["_id"] for h in answer.json()["hits"]["hits"]] == [
            h["_id"] for h in direct.json()["hits"]["hits"]
        ]
