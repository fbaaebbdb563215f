"""What Elasticsearch receives through the sidecar is what it receives directly, except
for the documented rewrites. A wire tap in front of the server records both paths.

Real Elasticsearch refuses a request whose ``Content-Type`` and ``Accept`` disagree on
``compatible-with`` (``RestCompatibleVersionHelper``: both versioned or neither, else 400
``media_type_header_exception``) and refuses ``text/plain`` bodies (its CSRF defence).
The local server enforces neither, so these tests assert the bytes and headers it was
sent, which is what a strict server would judge.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from devtools.fakes import FaultModel
from sidecar.config import build_config
from sidecar.upstream import EsClient, EsRequest
from tests.conftest import ESTarget
from tests.support.apps import running_sidecar
from tests.support.search import SAMPLE, base_config, multi_match
from tests.support.wire_tap import Seen, wire_tap

VENDOR = "application/vnd.elasticsearch+json; compatible-with={}"


def official_client_headers(major: int) -> dict[str, str]:
    """What the official 8.x Python and Node clients send with every request."""
    return {
        "Accept": VENDOR.format(major),
        "Content-Type": VENDOR.format(major),
        "User-Agent": f"elasticsearch-py/{major}.15.1 (Python/3.11.7; elastic-transport/8.15.0)",
        "x-elastic-client-meta": "es=8.15.1,py=3.11.7,t=8.15.0,ur=2.2.3",
    }


async def _post(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Accept", "Content-Type")) as s,
        s.post(url + path, data=body, headers=headers) as resp,
    ):
        await resp.read()
        return resp.status, resp.headers.get("Content-Type", ""), resp.headers.get("X-Rerank", "")


def _one(seen: list[Seen]) -> Seen:
    assert len(seen) == 1, [s.path_qs for s in seen]
    return seen[0]


@pytest.mark.parametrize("major", [7, 8, 9])
async def test_reranked_search_keeps_the_clients_media_types(
    es: ESTarget, sample_index: str, fake_reranker: FaultModel, major: int
) -> None:
    body = multi_match("renew a library card", size=5)
    raw = json.dumps(body).encode()
    headers = official_client_headers(major)
    async with wire_tap(es.url) as tap:
        config = base_config(tap.url, model={"name": fake_reranker.url})
        async with running_sidecar(config) as sc:
            direct_status, direct_type, _ = await _post(tap.url, f"/{SAMPLE}/_search", raw, headers)
            direct = _one(tap.take())
            status, content_type, rerank = await _post(sc.url, f"/{SAMPLE}/_search", raw, headers)
            via = _one(tap.take())
    if es.opensearch:
        # OpenSearch knows no Elasticsearch vendor media types: 406, as directly.
        assert rerank == "skipped; reason=es_error"
        assert status == direct_status == 406
    else:
        assert rerank == "applied"
        assert status == direct_status == 200
    assert via.method == direct.method and via.path_qs == direct.path_qs
    # Every header byte for byte, in order, but the body's new length.
    assert via.header_set() == direct.header_set()
    # The body: the documented rewrite and nothing else.
    forwarded: dict[str, Any] = json.loads(via.body)
    assert forwarded == body | {"from": 0, "size": 20}, "the page widened to the window"
    assert via.header_set(ignore=frozenset()) != [], "the tap saw the headers"
    # ES's own Content-Type comes back, not one the sidecar chose.
    assert content_type == direct_type


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", None],
)
async def test_a_media_type_es_refuses_still_reaches_es_as_sent(
    es: ESTarget, sample_index: str, fake_reranker: FaultModel, content_type: str | None
) -> None:
    """The sidecar never relabels a body as JSON: ES (or OpenSearch, 406) refuses it."""
    raw = json.dumps(multi_match("renew a library card")).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    async with (
        wire_tap(es.url) as tap,
        running_sidecar(base_config(tap.url, model={"name": fake_reranker.url})) as sc,
    ):
        await _post(sc.url, f"/{SAMPLE}/_search", raw, headers)
        via = _one(tap.take())
    received = [v for k, v in via.header_set() if k == "content-type"]
    assert received == ([content_type] if content_type else [])


async def test_the_client_sends_exactly_the_request_it_is_given(es: ESTarget) -> None:
    """The ES client adds nothing: no User-Agent, Accept, Accept-Encoding or Content-Type
    of its own, and the path and query keep their encoding."""
    config = build_config({"es": {"url": "http://127.0.0.1:9"}})
    async with wire_tap(es.url) as tap:
        es_config = config.es.model_copy(update={"url": tap.url})
        sessions = EsClient.create_sessions(es_config, config.tuning)
        client = EsClient(es_config, sessions, config.tuning)
        try:
            headers = CIMultiDict([("X-Opaque-Id", "abc"), ("Content-Type", "text/plain")])
            req = EsRequest("POST", "/a%2Cb/_search?q=x%20y&pretty", headers, b"{}")
            answer = await client.fetch(req)
        finally:
            await client.close()
    seen = _one(tap.take())
    assert answer.status in (200, 400, 404, 406)
    assert seen.path_qs == "/a%2Cb/_search?q=x%20y&pretty"
    assert seen.header_set() == [("x-opaque-id", "abc"), ("content-type", "text/plain")]
    assert seen.body == b"{}"


def test_rewritten_requests_change_only_the_body_and_moved_parameters() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request(
        "POST",
        "/i/_search?size=5&from=2&pretty&q=x",
        headers=CIMultiDict(
            [
                ("Content-Type", VENDOR.format(8)),
                ("Accept", VENDOR.format(8)),
                ("Accept-Encoding", "gzip"),
                ("Content-Length", "99"),
                ("Content-Encoding", "gzip"),
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "1"),
                ("Authorization", "ApiKey abc"),
            ]
        ),
    )
    req = EsRequest.rewritten(request, b"{}", drop_params=("size", "from"))
    assert req.path_qs == "/i/_search?pretty&q=x"
    assert list(req.headers.items()) == [
        ("Content-Type", VENDOR.format(8)),
        ("Accept", VENDOR.format(8)),
        ("Accept-Encoding", "gzip"),
        ("Content-Encoding", "gzip"),
        ("Authorization", "ApiKey abc"),
    ]
    # The new body is compressed as the client compressed its own.
    assert isinstance(req.body, bytes) and gzip.decompress(req.body) == b"{}"
    widened = EsRequest.rewritten(request, None, ("from",), (("size", "20"), ("from", "0")))
    assert widened.path_qs == "/i/_search?pretty&q=x&size=20&from=0"
    assert widened.body is None


@pytest.mark.parametrize("accept_encoding", ["gzip", None])
async def test_a_reranked_answer_is_encoded_as_es_encodes_it(
    es: ESTarget, sample_index: str, fake_reranker: FaultModel, accept_encoding: str | None
) -> None:
    raw = json.dumps(multi_match("renew a library card", size=3)).encode()
    headers = {"Content-Type": "application/json"}
    if accept_encoding:
        headers["Accept-Encoding"] = accept_encoding
    async with (
        running_sidecar(base_config(es.url, model={"name": fake_reranker.url})) as sc,
        aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("Accept-Encoding",)) as s,
    ):
        async with s.post(f"{es.url}/{SAMPLE}/_search", data=raw, headers=headers) as resp:
            direct_encoding = resp.headers.get("Content-Encoding")
        async with s.post(f"{sc.url}/{SAMPLE}/_search", data=raw, headers=headers) as resp:
            assert resp.headers["X-Rerank"] == "applied"
            encoding = resp.headers.get("Content-Encoding")
            data = await resp.read()
    assert encoding == direct_encoding
    if accept_encoding and not es.opensearch:
        assert encoding == "gzip", "noida-db compresses when asked (osmem-server never does)"
    if encoding == "gzip":
        data = gzip.decompress(data)
    body = json.loads(data)
    assert len(body["hits"]["hits"]) == 3 and "_rerank" not in body
