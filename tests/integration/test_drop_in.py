"""The official clients cannot tell the sidecar from the server behind it.

The same script of operations runs once straight against the server and once through the
sidecar; the status codes and JSON bodies must match (``took`` and index UUIDs aside). On
Elasticsearch it is the official ``elasticsearch`` 8 client (plain and with
``http_compress``), on OpenSearch the official ``opensearch-py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch, helpers
from opensearchpy import OpenSearch
from opensearchpy import helpers as os_helpers
from opensearchpy.exceptions import TransportError

from es_integration.sidecar_proc import SidecarProcess
from tests.conftest import ESTarget

INDEX = "dropin-compat"
N_DOCS = 1000
MAPPING = {
    "properties": {
        "title": {"type": "text"},
        "genre": {"type": "keyword"},
        "year": {"type": "integer"},
    }
}
GENRES = ["history", "science", "poetry", "cooking", "travel"]
PLACES = ["sea", "city", "stars"]


def _docs() -> list[dict[str, Any]]:
    return [
        {
            "_index": INDEX,
            "_id": str(i),
            "_source": {
                "title": f"book {i} about {GENRES[i % 5]} and the {PLACES[i % 3]}",
                "genre": GENRES[i % 5],
                "year": 1950 + i % 70,
            },
        }
        for i in range(N_DOCS)
    ]


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items() if k not in ("took", "uuid")}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def _call(fn: Callable[[], Any]) -> tuple[int, Any]:
    try:
        resp = fn()
    except ApiError as exc:
        return exc.meta.status, _normalize(exc.body)
    return resp.meta.status, _normalize(resp.body)


def _script(es: Elasticsearch) -> list[tuple[str, int, Any]]:
    """Every step returns (name, status, normalized body)."""
    es.options(ignore_status=404).indices.delete(index=INDEX)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("create", lambda: es.indices.create(index=INDEX, mappings=MAPPING)),
        ("get", lambda: es.get(index=INDEX, id="42")),
        (
            "update",
            lambda: es.update(index=INDEX, id="42", doc={"year": 2024}, refresh=True),
        ),
        ("get-after-update", lambda: es.get(index=INDEX, id="42")),
        ("count", lambda: es.count(index=INDEX)),
        ("count-query", lambda: es.count(index=INDEX, query={"term": {"genre": "poetry"}})),
        (
            "search-aggs",
            lambda: es.search(
                index=INDEX,
                query={"match": {"title": "stars"}},
                aggs={
                    "by_genre": {"terms": {"field": "genre"}},
                    "max_year": {"max": {"field": "year"}},
                },
                size=5,
            ),
        ),
        ("cat-indices", lambda: es.cat.indices(index=INDEX, format="json")),
        ("missing-index", lambda: es.search(index="no-such-index-dropin", query={"match_all": {}})),
        (
            "malformed-query",
            lambda: es.search(index=INDEX, query={"no_such_query_type": {"x": 1}}),
        ),
        ("delete", lambda: es.indices.delete(index=INDEX)),
    ]
    out: list[tuple[str, int, Any]] = []
    for name, fn in steps:
        status, body = _call(fn)
        out.append((name, status, body))
        if name == "create":
            ok, errors = helpers.bulk(es, _docs(), refresh="true", raise_on_error=False)
            out.append(("bulk", int(ok), errors))
    return out


def _os_call(fn: Callable[[], Any]) -> tuple[int, Any]:
    try:
        return 200, _normalize(fn())
    except TransportError as exc:
        status = exc.status_code if isinstance(exc.status_code, int) else 0
        return status, _normalize(exc.info)


def _os_script(client: OpenSearch) -> list[tuple[str, int, Any]]:
    """The same operations through opensearch-py (its own call shapes)."""
    client.indices.delete(index=INDEX, ignore=[404])
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("create", lambda: client.indices.create(index=INDEX, body={"mappings": MAPPING})),
        ("get", lambda: client.get(index=INDEX, id="42")),
        (
            "update",
            lambda: client.update(index=INDEX, id="42", body={"doc": {"year": 2024}}, refresh=True),
        ),
        ("get-after-update", lambda: client.get(index=INDEX, id="42")),
        ("count", lambda: client.count(index=INDEX)),
        (
            "count-query",
            lambda: client.count(index=INDEX, body={"query": {"term": {"genre": "poetry"}}}),
        ),
        (
            "search-aggs",
            lambda: client.search(
                index=INDEX,
                body={
                    "query": {"match": {"title": "stars"}},
                    "aggs": {
                        "by_genre": {"terms": {"field": "genre"}},
                        "max_year": {"max": {"field": "year"}},
                    },
                    "size": 5,
                },
            ),
        ),
        ("cat-indices", lambda: client.cat.indices(index=INDEX, format="json")),
        (
            "missing-index",
            lambda: client.search(index="no-such-index-dropin", body={"query": {"match_all": {}}}),
        ),
        (
            "malformed-query",
            lambda: client.search(index=INDEX, body={"query": {"no_such_query_type": {"x": 1}}}),
        ),
        ("delete", lambda: client.indices.delete(index=INDEX)),
    ]
    out: list[tuple[str, int, Any]] = []
    for name, fn in steps:
        status, body = _os_call(fn)
        out.append((name, status, body))
        if name == "create":
            ok, errors = os_helpers.bulk(client, _docs(), refresh="true", raise_on_error=False)
            out.append(("bulk", int(ok), errors))
    return out


def _run(es: ESTarget, url: str, compress: bool) -> list[tuple[str, int, Any]]:
    if es.opensearch:
        return _os_script(OpenSearch([url], timeout=30, http_compress=compress))
    return _script(Elasticsearch(url, request_timeout=30, http_compress=compress))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "http_compress"])
def test_client_sees_same_answers(es: ESTarget, sidecar: SidecarProcess, compress: bool) -> None:
    direct = _run(es, es.url, compress)
    proxied = _run(es, sidecar.url, compress)

    names = [n for n, _, _ in direct]
    assert names == [n for n, _, _ in proxied]
    for (name, d_status, d_body), (_, p_status, p_body) in zip(direct, proxied, strict=True):
        assert p_status == d_status, name
        assert p_body == d_body, name
    by_name = {n: (s, b) for n, s, b in proxied}
    # The script really exercised what it claims to.
    assert by_name["bulk"] == (N_DOCS, [])
    assert by_name["count"][1]["count"] == N_DOCS
    assert by_name["get-after-update"][1]["_source"]["year"] == 2024
    assert by_name["search-aggs"][1]["aggregations"]["by_genre"]["buckets"]
    assert by_name["missing-index"][0] == 404
    assert by_name["malformed-query"][0] == 400
    assert by_name["delete"][0] == 200


@pytest.mark.parametrize(
    "path", ["/", "/_cluster/health", "/_cat/indices?format=json&h=index,docs.count&s=index"]
)
def test_raw_bodies_match(es: ESTarget, sidecar: SidecarProcess, path: str) -> None:
    if es.opensearch:
        d = OpenSearch([es.url]).transport.perform_request("GET", path)
        p = OpenSearch([sidecar.url]).transport.perform_request("GET", path)
        assert _normalize(p) == _normalize(d)
        return
    d = Elasticsearch(es.url).perform_request("GET", path)
    p = Elasticsearch(sidecar.url).perform_request("GET", path)
    assert p.meta.status == d.meta.status
    assert _normalize(p.body) == _normalize(d.body)
