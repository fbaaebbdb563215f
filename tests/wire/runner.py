"""Run a case, a flow or a client script directly and through the sidecar, and compare.

Direct means through the wire tap to the server; through the sidecar means sidecar ->
wire tap -> server. The tap records what the server received both times.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.wire_tap import WireTap
from tests.wire.cases import WINDOW, Case
from tests.wire.compare import (
    REASKED,
    RERANKED,
    Answer,
    Differences,
    compare_answers,
    compare_received,
    decode,
)

NODE_DIR = Path(__file__).parent / "node"


@dataclass
class Result:
    group: str
    name: str
    outcome: str
    diffs: Differences


async def send(session: aiohttp.ClientSession, base: str, case: Case) -> Answer:
    async with session.request(
        case.method, base + case.path, data=case.body, headers=case.headers
    ) as resp:
        body = await resp.read()
        return Answer(resp.status, tuple(resp.headers.items()), body)


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=60),
    )


def _widen_body(body: Any, page: tuple[int, int]) -> Any:
    if not isinstance(body, dict):
        return body
    out = {k: v for k, v in body.items() if k != "rerank"}
    from_, size = body.get("from", 0), body.get("size", 10)
    if isinstance(from_, int) and isinstance(size, int):
        out["from"], out["size"] = 0, max(WINDOW, from_ + size)
    del page
    return out


def reference_case(case: Case) -> Case | None:
    """The client's search with its page widened to the window, nothing else changed."""
    path, _, query = case.path.partition("?")
    encoding = case.headers.get("Content-Encoding")
    params = [p for p in query.split("&") if p]
    url_paging = any(p.split("=")[0] in ("from", "size") for p in params)
    from_, size = case.page
    widened = max(WINDOW, from_ + size)
    if case.body is None or url_paging:
        params = [p for p in params if p.split("=")[0] not in ("from", "size")]
        params += ["from=0", f"size={widened}"]
        body = case.body
        if body is not None and path.endswith("/_search"):
            data = json.loads(decode(body, encoding))
            data = {k: v for k, v in data.items() if k not in ("from", "size", "rerank")}
            body = json.dumps(data).encode()
            body = gzip.compress(body) if encoding == "gzip" else body
        return Case(
            case.group, case.name, case.method, f"{path}?{'&'.join(params)}", body, case.headers
        )
    raw = decode(case.body, encoding)
    if path.endswith("/_msearch"):
        lines = raw.split(b"\n")
        non_blank = [i for i, line in enumerate(lines) if line.strip()]
        for n, i in enumerate(non_blank):
            if n % 2 == 1:
                try:
                    lines[i] = json.dumps(_widen_body(json.loads(lines[i]), case.page)).encode()
                except ValueError:
                    return None
        data = b"\n".join(lines)
    else:
        try:
            data = json.dumps(_widen_body(json.loads(raw), case.page)).encode()
        except ValueError:
            return None
    if encoding == "gzip":
        data = gzip.compress(data)
    query_part = f"?{query}" if query else ""
    return Case(case.group, case.name, case.method, path + query_part, data, case.headers)


#: Reasons decided before ES is asked: the client's request went to ES as sent (but for a
#: ``rerank`` object taken out). After any other outcome ES got the rewritten search.
PLAN_SKIPS = {
    "rollout_off",
    "disabled_by_request",
    "format",
    "scroll",
    "pit",
    "search_after",
    "sort",
    "rescore",
    "stored_fields_none",
    "unparsed_body",
    "unparsed_paging",
    "unparsed_source_filter",
    "size_zero",
    "no_query_text",
    "beyond_window",
    "filter_path",
    "duplicate_keys",
    "unserializable_body",
    "encoded_body",
    "no_body",
    "no_searches",
}


def _rewritten(outcome: str, case: Case) -> bool:
    if case.body is not None and b'"rerank"' in decode(
        case.body, case.headers.get("Content-Encoding")
    ):
        return True
    if outcome == "passthrough":
        return False
    reason = outcome.partition("reason=")[2]
    return reason not in PLAN_SKIPS


def direct_case_of(case: Case) -> Case:
    """What a client sends to the server itself: the sidecar's ``rerank`` object is the
    sidecar's own extension (the server refuses it), so the direct request goes without."""
    if case.body is None or b'"rerank"' not in case.body:
        return case
    encoding = case.headers.get("Content-Encoding")
    path = case.path.split("?")[0]
    raw = decode(case.body, encoding)
    if path.endswith("/_msearch"):
        lines = raw.split(b"\n")
        for i, line in enumerate(lines):
            if b'"rerank"' in line:
                data = json.loads(line)
                if isinstance(data, dict):
                    data.pop("rerank", None)
                lines[i] = json.dumps(data).encode()
        out = b"\n".join(lines)
    else:
        data = json.loads(raw)
        data.pop("rerank", None)
        out = json.dumps(data).encode()
    if encoding == "gzip":
        out = gzip.compress(out)
    return Case(case.group, case.name, case.method, case.path, out, case.headers, case.page)


async def run_case(
    session: aiohttp.ClientSession, tap: WireTap, sidecar: str, case: Case
) -> Result:
    diffs = Differences()
    tap.take()
    direct_case = direct_case_of(case).rendered("wrun0")
    via_case = case.rendered("wrun1")
    direct = await send(session, tap.url, direct_case)
    seen_direct = tap.take()
    via = await send(session, sidecar, via_case)
    seen_via = tap.take()
    outcome = via.header("X-Rerank") or "passthrough"
    reranked = outcome.split(";")[0] in RERANKED
    reference = None
    if reranked:
        ref_case = reference_case(direct_case)
        if ref_case is not None:
            reference = await send(session, tap.url, ref_case)
            tap.take()
    compare_received(
        seen_direct,
        seen_via,
        rewritten=_rewritten(outcome, case),
        diffs=diffs,
        ids=frozenset(),
        reasked=outcome.partition("reason=")[2] in REASKED,
    )
    compare_answers(direct, via, reference=reference, diffs=diffs, ids=frozenset())
    return Result(case.group, case.name, outcome, diffs)


# ----------------------------------------------------------------------------- flows

Send = Callable[[str, str, Any, dict[str, str]], Awaitable[Answer]]


def _body(answer: Answer) -> Any:
    try:
        return json.loads(answer.decoded)
    except ValueError:
        return None


async def scroll_flow(send_: Send, opensearch: bool, ids: set[str]) -> list[Answer]:
    del opensearch
    json_ct = {"Content-Type": "application/json"}
    body = {"query": {"multi_match": {"query": "guide", "fields": ["title", "body"]}}, "size": 5}
    first = await send_("POST", "/wire/_search?scroll=1m", body, json_ct)
    out = [first]
    scroll_id = (_body(first) or {}).get("_scroll_id")
    for _ in range(3):
        if not isinstance(scroll_id, str):
            break
        ids.add(scroll_id)
        page = await send_(
            "POST", "/_search/scroll", {"scroll": "1m", "scroll_id": scroll_id}, json_ct
        )
        out.append(page)
        scroll_id = (_body(page) or {}).get("_scroll_id", scroll_id)
    if isinstance(scroll_id, str):
        ids.add(scroll_id)
        out.append(await send_("DELETE", "/_search/scroll", {"scroll_id": [scroll_id]}, json_ct))
    return out


async def pit_flow(send_: Send, opensearch: bool, ids: set[str]) -> list[Answer]:
    json_ct = {"Content-Type": "application/json"}
    if opensearch:
        opened = await send_("POST", "/wire/_search/point_in_time?keep_alive=1m", None, {})
        pit = (_body(opened) or {}).get("pit_id")
    else:
        opened = await send_("POST", "/wire/_pit?keep_alive=1m", None, {})
        pit = (_body(opened) or {}).get("id")
    out = [opened]
    if not isinstance(pit, str):
        return out
    ids.add(pit)
    after: Any = None
    for _ in range(3):
        body: dict[str, Any] = {
            "query": {"multi_match": {"query": "password reset", "fields": ["title", "body"]}},
            "pit": {"id": pit, "keep_alive": "1m"},
            "sort": ["_score", {"pk": "asc"}],
            "size": 4,
        }
        if after is not None:
            body["search_after"] = after
        page = await send_("POST", "/_search", body, json_ct)
        out.append(page)
        data = _body(page) or {}
        new_pit = data.get("pit_id")
        if isinstance(new_pit, str):
            ids.add(new_pit)
        hits = data.get("hits", {}).get("hits", [])
        if not hits or "sort" not in hits[-1]:
            break
        after = hits[-1]["sort"]
    if opensearch:
        out.append(await send_("DELETE", "/_search/point_in_time", {"pit_id": [pit]}, json_ct))
    else:
        out.append(await send_("DELETE", "/_pit", {"id": pit}, json_ct))
    return out


FLOWS: dict[str, Callable[[Send, bool, set[str]], Awaitable[list[Answer]]]] = {
    "scroll": scroll_flow,
    "pit": pit_flow,
}


async def run_flow(
    session: aiohttp.ClientSession, tap: WireTap, sidecar: str, name: str, opensearch: bool
) -> list[Result]:
    flow = FLOWS[name]
    ids: set[str] = set()

    def sender(base: str) -> Send:
        async def send_(method: str, path: str, body: Any, headers: dict[str, str]) -> Answer:
            data = json.dumps(body).encode() if body is not None else None
            return await send(session, base, Case(name, name, method, path, data, headers))

        return send_

    tap.take()
    direct = await flow(sender(tap.url), opensearch, ids)
    seen_direct = tap.take()
    via = await flow(sender(sidecar), opensearch, ids)
    seen_via = tap.take()
    frozen = frozenset(ids)
    diffs = Differences()
    compare_received(seen_direct, seen_via, rewritten=False, diffs=diffs, ids=frozen)
    if len(direct) != len(via):
        diffs.add(f"{len(via)} steps through the sidecar, {len(direct)} directly")
    results = []
    for i, (d, v) in enumerate(zip(direct, via, strict=False)):
        step = Differences(list(diffs.items) if i == 0 else [])
        compare_answers(d, v, reference=None, diffs=step, ids=frozen)
        results.append(
            Result(name, f"{name}-step-{i}", v.header("X-Rerank") or "passthrough", step)
        )
    return results


# -------------------------------------------------------------------- client scripts


@dataclass(frozen=True)
class Step:
    name: str
    status: int
    body: Any
    #: The answer's X-Rerank, where the client shows headers (None where it does not).
    rerank: str | None = None


def python_es_script(url: str, index: str, compress: bool) -> list[Step]:
    from elasticsearch import ApiError, Elasticsearch, helpers

    es = Elasticsearch(url, request_timeout=30, http_compress=compress)
    q = {"multi_match": {"query": "password reset", "fields": ["title^2", "body"]}}

    def call(name: str, fn: Callable[[], Any]) -> Step:
        try:
            resp = fn()
            return Step(name, resp.meta.status, resp.body, resp.meta.headers.get("X-Rerank"))
        except ApiError as exc:
            return Step(name, exc.meta.status, exc.body, exc.meta.headers.get("X-Rerank"))

    out = [
        call("create", lambda: es.indices.create(index=index, mappings=_client_mapping())),
    ]
    ok, errors = helpers.bulk(es, _client_docs(index), refresh="true", raise_on_error=False)
    out.append(Step("bulk", 200, [ok, errors]))
    out += [
        call("search", lambda: es.search(index=index, query=q, size=10)),
        call("search-aggs", lambda: es.search(index=index, query=q, size=10, aggs=_aggs())),
        call("search-source-false", lambda: es.search(index=index, query=q, source=False)),
        call(
            "search-filter-path",
            lambda: es.search(index=index, query=q, filter_path="hits.hits._id,hits.total"),
        ),
        call("search-highlight", lambda: es.search(index=index, query=q, highlight=_hl())),
        call(
            "msearch",
            lambda: es.msearch(
                searches=[{"index": index}, {"query": q, "size": 10}, {}, {"size": 0}]
            ),
        ),
        call("count", lambda: es.count(index=index, query=q)),
        call("get", lambda: es.get(index=index, id="3")),
        call("update", lambda: es.update(index=index, id="3", doc={"year": 1}, refresh=True)),
        call("missing", lambda: es.search(index=index + "-missing", query=q)),
        call("bad-query", lambda: es.search(index=index, query={"nope": {}})),
        call("delete-index", lambda: es.indices.delete(index=index)),
    ]
    es.close()
    return out


def python_os_script(url: str, index: str, compress: bool) -> list[Step]:
    from opensearchpy import OpenSearch, helpers
    from opensearchpy.exceptions import TransportError

    client = OpenSearch([url], timeout=30, http_compress=compress)
    q = {"multi_match": {"query": "password reset", "fields": ["title^2", "body"]}}

    def call(name: str, fn: Callable[[], Any]) -> Step:
        try:
            return Step(name, 200, fn())
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            return Step(name, status, exc.info)

    out = [
        call(
            "create",
            lambda: client.indices.create(index=index, body={"mappings": _client_mapping()}),
        ),
    ]
    ok, errors = helpers.bulk(client, _client_docs(index), refresh="true", raise_on_error=False)
    out.append(Step("bulk", 200, [ok, errors]))
    out += [
        call("search", lambda: client.search(index=index, body={"query": q, "size": 10})),
        call(
            "search-aggs",
            lambda: client.search(index=index, body={"query": q, "size": 10, "aggs": _aggs()}),
        ),
        call(
            "search-source-false",
            lambda: client.search(index=index, body={"query": q, "_source": False}),
        ),
        call(
            "search-filter-path",
            lambda: client.search(
                index=index, body={"query": q}, params={"filter_path": "hits.hits._id,hits.total"}
            ),
        ),
        call(
            "search-highlight",
            lambda: client.search(index=index, body={"query": q, "highlight": _hl()}),
        ),
        call(
            "msearch",
            lambda: client.msearch(
                body=[{"index": index}, {"query": q, "size": 10}, {"index": index}, {"size": 0}]
            ),
        ),
        call("count", lambda: client.count(index=index, body={"query": q})),
        call("get", lambda: client.get(index=index, id="3")),
        call(
            "update",
            lambda: client.update(index=index, id="3", body={"doc": {"year": 1}}, refresh=True),
        ),
        call("missing", lambda: client.search(index=index + "-missing", body={"query": q})),
        call("bad-query", lambda: client.search(index=index, body={"query": {"nope": {}}})),
        call("delete-index", lambda: client.indices.delete(index=index)),
    ]
    client.close()
    return out


def node_script(url: str, index: str, compress: bool) -> list[Step]:
    env = {**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")}
    proc = subprocess.run(
        ["node", str(NODE_DIR / "script.js"), url, index, "1" if compress else "0"],
        capture_output=True,
        timeout=120,
        env=env,
        cwd=NODE_DIR,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the node script failed: {proc.stderr.decode()[-2000:]}")
    return [
        Step(s["name"], s["status"], s["body"], s.get("rerank")) for s in json.loads(proc.stdout)
    ]


def _client_mapping() -> dict[str, Any]:
    return {
        "properties": {
            "title": {"type": "text"},
            "body": {"type": "text"},
            "category": {"type": "keyword"},
            "year": {"type": "integer"},
        }
    }


def _client_docs(index: str) -> list[dict[str, Any]]:
    from tests.wire.cases import corpus_docs

    return [
        {
            "_index": index,
            "_id": str(d["pk"]),
            "_source": {k: d[k] for k in ("title", "body", "category", "year")},
        }
        for d in corpus_docs()[:20]
    ]


def _aggs() -> dict[str, Any]:
    return {"cats": {"terms": {"field": "category"}}}


def _hl() -> dict[str, Any]:
    return {"fields": {"body": {}}}


async def run_script(
    tap: WireTap,
    sidecar: str,
    script: Callable[[str, str, bool], list[Step]],
    name: str,
    compress: bool,
) -> list[Result]:
    tap.take()
    direct = await asyncio.to_thread(script, tap.url, "wire-client-wrun0", compress)
    seen_direct = tap.take()
    via = await asyncio.to_thread(script, sidecar, "wire-client-wrun1", compress)
    seen_via = tap.take()
    diffs = Differences()
    compare_received(seen_direct, seen_via, rewritten=True, diffs=diffs, ids=frozenset())
    results = []
    for i, (d, v) in enumerate(zip(direct, via, strict=True)):
        step = Differences(list(diffs.items) if i == 0 else [])
        d_answer = Answer(d.status, (), json.dumps(d.body).encode())
        v_answer = Answer(v.status, (), json.dumps(v.body).encode())
        compare_answers(
            d_answer, v_answer, reference=None, diffs=step, ids=frozenset(), outcome=v.rerank
        )
        results.append(Result(name, f"{name}:{d.name}", v.rerank or "passthrough", step))
    return results
