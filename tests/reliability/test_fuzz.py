"""Bad input against the HTTP surface of a real sidecar (a child process with the bundled
model, in front of the session's ES with the sample corpus):

* schemathesis generates requests from ``sidecar/openapi.yaml`` (the sidecar's own API
  document), valid and deliberately invalid ones, for every operation: at least 500 in all;
* a hand-written corpus of the classic bad inputs: invalid JSON, wrong types, deep nesting,
  non-UTF-8, oversized and decompression-bomb bodies, huge size/from, a window over the
  limit, 10,000 documents on /_sidecar/v1/rerank.

For every response: no 5xx the sidecar made itself (ES is up, so its documented 502/503/504
states must not appear; a 5xx is accepted only where ES gives the same status for the same
request), the process stays up, and every 4xx says why (a JSON body with an ``error``, or
aiohttp's plain-text reason for a malformed request line/header).
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from es_integration.sidecar_proc import SidecarProcess
from tests.conftest import ESTarget
from tests.support.search import BUNDLED_MODEL, SAMPLE, multi_match

OPENAPI = Path(__file__).resolve().parents[2] / "sidecar" / "openapi.yaml"
TOKEN = "fuzz-admin-token"
SIDECAR_ERRORS = {
    "sidecar_exception",
    "upstream_unavailable_exception",
    "upstream_timeout_exception",
    "upstream_bad_response_exception",
    "upstream_response_too_large_exception",
    "service_unavailable_exception",
}


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


@pytest.fixture(scope="module")
def fuzz_target(
    es: ESTarget, sample_index: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    config = {
        "admin": {"token": TOKEN},
        "rerank": {"window": 20, "budget_ms": 5000},
        "rollout": {"trusted_clients": ["127.0.0.1/32"]},
        "server": {"access_log": False},
    }
    log = tmp_path_factory.mktemp("fuzz") / "sidecar.log"
    with SidecarProcess.start(
        es.url, log_path=log, model=BUNDLED_MODEL, config=config, wait_ready=True, timeout=120
    ) as sc:
        yield sc.url, es.url
        assert sc.proc.poll() is None, "the sidecar died under fuzzing"
        text = log.read_text()
        assert "unhandled error" not in text, text[text.find("unhandled error") :][:2000]


class Verdicts:
    def __init__(self, es_url: str) -> None:
        self.es_url = es_url
        self.statuses: Counter[int] = Counter()
        self.problems: list[str] = []

    def check(self, resp: requests.Response, label: str) -> None:
        self.statuses[resp.status_code] += 1
        status = resp.status_code
        if status >= 500:
            self._check_5xx(resp, label)
        elif status >= 400 and not self._says_why(resp):
            self.problems.append(f"{label}: {status} without a reason: {resp.content[:200]!r}")

    @staticmethod
    def _says_why(resp: requests.Response) -> bool:
        if not resp.content:
            return resp.request.method == "HEAD"
        if "json" not in resp.headers.get("Content-Type", ""):
            return True  # aiohttp's plain-text reason for a malformed request
        try:
            body = resp.json()
        except ValueError:
            return False
        if not isinstance(body, dict) or "error" not in body:
            return False
        error = body["error"]
        return bool(error if isinstance(error, str) else error.get("reason") or error.get("type"))

    def _check_5xx(self, resp: requests.Response, label: str) -> None:
        try:
            kind = resp.json()["error"]["type"]
        except (ValueError, KeyError, TypeError):
            kind = None
        if kind in SIDECAR_ERRORS:
            self.problems.append(f"{label}: the sidecar answered {resp.status_code} {kind}")
            return
        # Not one of ours: it must be ES's own answer to the same request.
        req = resp.request
        url = self.es_url + req.path_url
        direct = requests.request(
            req.method or "GET", url, data=req.body, headers=dict(req.headers), timeout=30
        )
        if direct.status_code != resp.status_code:
            self.problems.append(
                f"{label}: {resp.status_code} where ES answers {direct.status_code}"
            )


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    base: str,
    session: requests.Session,
    verdicts: Verdicts,
) -> int:
    """Run ``examples`` generated cases of one operation; returns how many were sent."""
    sent = 0
    label = f"{operation.label} [{mode.value}]"

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), auth=st.sampled_from(AUTHS))
    def run(case: Any, auth: str | None) -> None:
        nonlocal sent
        headers = {"Authorization": f"Bearer {auth}"} if auth else None
        try:
            resp = case.call(base_url=base, session=session, headers=headers, timeout=60)
        except requests.ConnectionError as exc:
            verdicts.problems.append(f"{label}: connection error {exc}")
            return
        sent += 1
        verdicts.check(resp, label)

    try:
        run()
    except Unsatisfiable:
        # Nothing in this operation can be made invalid (no parameters, no body).
        assert mode is GenerationMode.NEGATIVE, label
    return sent


AUTHS = [None, TOKEN, "wrong"]


def test_schemathesis_fuzz_of_the_openapi_surface(fuzz_target: tuple[str, str]) -> None:
    base, es_url = fuzz_target
    schema = schemathesis.openapi.from_path(OPENAPI)
    verdicts = Verdicts(es_url)
    session = requests.Session()
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        heavy = (
            operation.path in ("/_sidecar/v1/rerank", "/_sidecar/rerank")
            or "_search" in operation.path
        )
        examples = 25 if heavy or "_msearch" in operation.path else 8
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent += _fuzz_operation(operation, mode, examples, base, session, verdicts)
    # The fuzzer may have opened the breaker through the admin API: leave it closed.
    session.post(
        f"{base}/_sidecar/admin/breaker/reset", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    print(f"schemathesis: {sent} requests, statuses {dict(sorted(verdicts.statuses.items()))}")
    assert sent >= 500, sent
    assert not verdicts.problems, verdicts.problems[:10]
    assert requests.get(f"{base}/_sidecar/health", timeout=5).status_code == 200


def _deep(n: int) -> dict[str, Any]:
    node: dict[str, Any] = {"match": {"title": "library"}}
    for _ in range(n):
        node = {"bool": {"must": [node]}}
    return {"query": node}


JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}
BAD_INPUTS: list[tuple[str, str, str, bytes, dict[str, str], set[int] | None]] = [
    # (name, method, path, body, headers, expected statuses or None for "any non-5xx")
    ("invalid json search", "POST", f"/{SAMPLE}/_search", b'{"query": {', JSON, None),
    ("invalid json msearch", "POST", "/_msearch", b'{}\n{"query": \n', NDJSON, None),
    ("invalid json rerank", "POST", "/_sidecar/v1/rerank", b'{"query": ', JSON, {400}),
    ("empty rerank", "POST", "/_sidecar/v1/rerank", b"", JSON, {400}),
    ("rerank not object", "POST", "/_sidecar/rerank", b"[1, 2, 3]", JSON, {400}),
    (
        "query wrong type",
        "POST",
        "/_sidecar/v1/rerank",
        b'{"query": 5, "documents": ["a"]}',
        JSON,
        {400},
    ),
    (
        "documents dict",
        "POST",
        "/_sidecar/v1/rerank",
        b'{"query": "q", "documents": {"a": 1}}',
        JSON,
        {400},
    ),
    ("texts numbers", "POST", "/_sidecar/rerank", b'{"query": "q", "texts": [1, 2]}', JSON, {400}),
    (
        "top_n bool",
        "POST",
        "/_sidecar/v1/rerank",
        b'{"query":"q","documents":["a"],"top_n":true}',
        JSON,
        {400},
    ),
    (
        "top_n huge",
        "POST",
        "/_sidecar/v1/rerank",
        b'{"query":"q","documents":["a"],"top_n":1e400}',
        JSON,
        {400},
    ),
    (
        "window string",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "rerank": {"window": "10"}}).encode(),
        JSON,
        {400},
    ),
    (
        "window over max",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "rerank": {"window": 501}}).encode(),
        JSON,
        {400},
    ),
    (
        "window over max in msearch",
        "POST",
        "/_msearch",
        b'{"index":"'
        + SAMPLE.encode()
        + b'"}\n'
        + json.dumps({**multi_match("library"), "rerank": {"window": 10**6}}).encode()
        + b"\n",
        NDJSON,
        {400},
    ),
    (
        "rerank fields int",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "rerank": {"fields": 3}}).encode(),
        JSON,
        {400},
    ),
    (
        "rerank unknown key",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "rerank": {"bogus": 1}}).encode(),
        JSON,
        {400},
    ),
    (
        "size string",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "size": "ten"}).encode(),
        JSON,
        None,
    ),
    (
        "size huge url",
        "GET",
        f"/{SAMPLE}/_search?q=library&size=100000000000000000000",
        b"",
        {},
        None,
    ),
    ("from huge url", "GET", f"/{SAMPLE}/_search?q=library&from=99999999999", b"", {}, None),
    (
        "size 2^31 body",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "size": 2**31}).encode(),
        JSON,
        None,
    ),
    (
        "size 2^63 body",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "size": 2**63}).encode(),
        JSON,
        None,
    ),
    (
        "from negative",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "from": -5}).encode(),
        JSON,
        None,
    ),
    (
        "size bool",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "size": True}).encode(),
        JSON,
        None,
    ),
    (
        "deep valid nesting",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps(_deep(200)).encode(),
        JSON,
        None,
    ),
    (
        "deep invalid nesting",
        "POST",
        f"/{SAMPLE}/_search",
        b"[" * 100_000 + b"]" * 100_000,
        JSON,
        None,
    ),
    (
        "deep nesting rerank",
        "POST",
        "/_sidecar/v1/rerank",
        b'{"query":' + b"[" * 50_000,
        JSON,
        {400},
    ),
    ("non-utf8 search", "POST", f"/{SAMPLE}/_search", b'{"query": "\xff\xfe"}', JSON, None),
    (
        "non-utf8 rerank",
        "POST",
        "/_sidecar/v1/rerank",
        b'{"query": "\xff", "documents": ["a"]}',
        JSON,
        {400},
    ),
    ("non-utf8 msearch", "POST", "/_msearch", b"{}\n\xff\xfe\n", NDJSON, None),
    ("non-utf8 query string", "GET", f"/{SAMPLE}/_search?q=%ff%fe%00", b"", {}, None),
    (
        "oversized search",
        "POST",
        f"/{SAMPLE}/_search",
        b"{" + b" " * (11 << 20) + b"}",
        JSON,
        {413},
    ),
    ("oversized msearch", "POST", "/_msearch", b"{}\n" * (4 << 20), NDJSON, {413}),
    (
        "oversized rerank",
        "POST",
        "/_sidecar/v1/rerank",
        b'{"query":"' + b"q" * (11 << 20) + b'"}',
        JSON,
        {413},
    ),
    (
        "gzip bomb",
        "POST",
        f"/{SAMPLE}/_search",
        gzip.compress(b" " * (64 << 20)),
        {**JSON, "Content-Encoding": "gzip"},
        {400},
    ),
    (
        "bad gzip",
        "POST",
        f"/{SAMPLE}/_search",
        b"not gzip at all",
        {**JSON, "Content-Encoding": "gzip"},
        {400},
    ),
    (
        "10000 documents",
        "POST",
        "/_sidecar/v1/rerank",
        json.dumps({"query": "q", "documents": ["doc"] * 10_000}).encode(),
        JSON,
        {400},
    ),
    ("msearch odd lines", "POST", "/_msearch", b"{}\n", NDJSON, None),
    (
        "msearch 300 searches",
        "POST",
        f"/{SAMPLE}/_msearch",
        b'{}\n{"query":{"match_all":{}},"size":1}\n' * 300,
        NDJSON,
        {200},
    ),
    (
        "msearch header not object",
        "POST",
        f"/{SAMPLE}/_msearch",
        b'[]\n{"query":{"match":{"title":"library"}}}\n"x"\n5\n',
        NDJSON,
        None,
    ),
    ("search body is a list", "POST", f"/{SAMPLE}/_search", b"[1, 2]", JSON, None),
    (
        "source filter garbage",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "_source": {"includes": [1, None]}}).encode(),
        JSON,
        None,
    ),
    (
        "sort garbage",
        "POST",
        f"/{SAMPLE}/_search",
        json.dumps({**multi_match("library"), "sort": [{"_score": {"order": 5}}]}).encode(),
        JSON,
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "headers", "expected"),
    BAD_INPUTS,
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_inputs(
    fuzz_target: tuple[str, str],
    name: str,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    expected: set[int] | None,
) -> None:
    base, es_url = fuzz_target
    resp = requests.request(method, base + path, data=body or None, headers=headers, timeout=60)
    verdicts = Verdicts(es_url)
    verdicts.check(resp, name)
    assert not verdicts.problems, verdicts.problems
    if expected is not None:
        assert resp.status_code in expected, (resp.status_code, resp.content[:300])
    assert resp.status_code < 500 or resp.status_code == _es_status(es_url, method, path, body)
    if resp.status_code == 200 and "_search" in path:
        assert isinstance(resp.json(), dict)


def _es_status(es_url: str, method: str, path: str, body: bytes) -> int:
    return requests.request(method, es_url + path, data=body or None, timeout=60).status_code
