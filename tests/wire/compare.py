"""What counts as a difference between the direct run and the run through the sidecar.

What the server received (the wire tap's records) must be the same request, byte for byte,
but for the documented rewrites, and those only on a search the sidecar rewrote:

* the ``rerank`` object removed from the body;
* ``from``/``size`` widened (in the body; in the URL for a search without a body);
* ``_source`` widened to the text fields (the body's ``_source``, or the ``_source*`` URL
  parameters moved into the body or set in the URL);
* ``filter_path`` taken off the URL (the sidecar applies it);

and the sidecar's own lookup, before a search whose ``query_string`` scopes words to fields
it does not know yet: ``GET <index>/_mapping/field/<names>`` without a body (once per index
and field: it is remembered).

The body of a rewritten request is compared as JSON after decoding its
``Content-Encoding`` (it is written anew); every header is compared as sent (but
``Content-Length``).

What the client received must be the same answer: status, headers (but ``Date``,
``Content-Length``, and the sidecar's own ``X-Rerank``, ``X-Request-Id`` and
``Server-Timing``), and body (but what any two calls to the server differ in: ``took``,
sequence numbers, scroll and point-in-time ids), with exactly the server's keys (the
sidecar's annotations are opt-in, and off here). In a reranked search response (its
``X-Rerank`` says so; where a client library hides the header, any answer that differs from
the direct one is held to these rules), the order and ``_score`` of the hits,
``max_score``, their ``sort`` values and their ``_explanation`` are the rerank's: the page
must hold as many hits as the direct page, each of them a hit, exactly as the server writes
it, of the same search with the page widened to the window (the reference); ``_score`` must
not rise down the page; and an ``_explanation`` must have the hit's ``_score`` as its value
and the server's own explanation of that hit among its details.
"""

from __future__ import annotations

import gzip
import itertools
import json
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from tests.support.wire_tap import Seen

TOKENS = (b"wrun1", b"wrun0")
RERANKED = ("applied", "cached", "shadow")
#: URL parameters the sidecar may move or set on a search it rewrites.
REWRITABLE_PARAMS = {
    "from",
    "size",
    "filter_path",
    "_source",
    "_source_includes",
    "_source_excludes",
}
#: Body keys the sidecar may change on a search it rewrites.
REWRITABLE_KEYS = {"from", "size", "_source", "rerank"}
#: Response headers that are per call, or the sidecar's own.
CLIENT_HEADER_IGNORE = {
    "date",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "x-rerank",
    "x-request-id",
    "server-timing",
}
#: Response fields that differ between any two calls to the server.
VOLATILE = {
    "took",
    "_seq_no",
    "_primary_term",
    "_scroll_id",
    "pit_id",
    "creation_time",
    "uuid",
    "cluster_uuid",
}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def decoded(self) -> bytes:
        return decode(self.body, self.header("Content-Encoding"))


@dataclass
class Differences:
    items: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.items.append(what)

    def __bool__(self) -> bool:
        return bool(self.items)


def decode(data: bytes, encoding: str | None) -> bytes:
    enc = (encoding or "").lower()
    if enc in ("gzip", "x-gzip"):
        return gzip.decompress(data)
    if enc == "deflate":
        return zlib.decompress(data)
    return data


def untoken(data: bytes) -> bytes:
    return data.replace(*TOKENS)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def normalize(value: Any, ids: frozenset[str] = frozenset()) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in VOLATILE:
                continue
            if k in ("id", "scroll_id") and isinstance(v, str | list):
                out[k] = "<id>"
                continue
            out[k] = normalize(v, ids)
        return out
    if isinstance(value, list):
        return [normalize(v, ids) for v in value]
    if isinstance(value, str) and value in ids:
        return "<id>"
    return value


def _params(query: str) -> list[tuple[str, str]]:
    out = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        out.append((unquote_plus(key), unquote_plus(value)))
    return out


def _is_search(path: str) -> bool:
    tail = path.split("?")[0].rstrip("/")
    return tail.endswith("/_search") or tail.endswith("/_msearch")


# ------------------------------------------------------------------- server received


#: Outcomes after which the sidecar asked ES again with the client's own request.
REASKED = {"es_error", "result_window", "unexpected_response", "unserializable_response"}


def _decoded(seen: Seen) -> Seen:
    """The request with its body decoded and the run token mapped back."""
    encoding = dict(seen.header_set()).get("content-encoding")
    body = untoken(decode(seen.body, encoding))
    return Seen(seen.method, untoken(seen.path_qs.encode()).decode(), seen.headers, body)


def compare_received(
    direct: list[Seen],
    via: list[Seen],
    *,
    rewritten: bool,
    diffs: Differences,
    ids: frozenset[str],
    reasked: bool = False,
) -> None:
    direct = [_decoded(s) for s in direct]
    via = [_decoded(s) for s in via]
    lookups = [s for s in via if "/_mapping/field/" in s.path_qs and s not in direct]
    for seen in lookups:
        if seen.method != "GET" or seen.body:
            diffs.add(f"a mapping lookup {seen.method} {seen.path_qs} with {seen.body!r}")
    via = [s for s in via if s not in lookups]
    if reasked and len(via) == len(direct) + 1:
        # The rewritten search, then the client's own request exactly as sent.
        _compare_seen(direct[-1:], via[-1:], rewritten=False, diffs=diffs, ids=ids)
        via = via[:-1]
    _compare_seen(direct, via, rewritten=rewritten, diffs=diffs, ids=ids)


def _compare_seen(
    direct: list[Seen], via: list[Seen], *, rewritten: bool, diffs: Differences, ids: frozenset[str]
) -> None:
    if len(direct) != len(via):
        diffs.add(f"server got {len(via)} requests through the sidecar, {len(direct)} directly")
        return
    for d, v in zip(direct, via, strict=True):
        if d.method != v.method:
            diffs.add(f"method {v.method} != {d.method}")
        if d.header_set() != v.header_set():
            diffs.add(f"headers {v.header_set()} != {d.header_set()}")
        d_path, _, d_query = d.path_qs.partition("?")
        v_path, _, v_query = v.path_qs.partition("?")
        if d_path != v_path:
            diffs.add(f"path {v_path} != {d_path}")
        may_rewrite = rewritten and _is_search(d.path_qs)
        if not may_rewrite:
            if d_query != v_query:
                diffs.add(f"query {v_query!r} != {d_query!r}")
            if normalize_ids(d.body, ids) != normalize_ids(v.body, ids):
                diffs.add("body bytes differ")
            continue
        keep = [p for p in _params(d_query) if p[0] not in REWRITABLE_PARAMS]
        if keep != [p for p in _params(v_query) if p[0] not in REWRITABLE_PARAMS]:
            diffs.add(f"query {v_query!r} != {d_query!r} beyond the documented rewrites")
        _compare_bodies(d, v, diffs)


def normalize_ids(data: bytes, ids: frozenset[str]) -> bytes:
    for value in ids:
        data = data.replace(value.encode(), b"<id>")
    return data


def _compare_bodies(d: Seen, v: Seen, diffs: Differences) -> None:
    d_body, v_body = d.body, v.body
    if d_body == v_body:
        return
    if d.path_qs.split("?")[0].endswith("/_msearch"):
        d_lines, v_lines = d_body.split(b"\n"), v_body.split(b"\n")
        if len(d_lines) != len(v_lines):
            diffs.add("msearch payload has other lines")
            return
        for i, (a, b) in enumerate(zip(d_lines, v_lines, strict=True)):
            if a != b:
                _compare_search_body(a, b, diffs, f"msearch line {i}: ")
        return
    _compare_search_body(d_body, v_body, diffs, "")


def _compare_search_body(a: bytes, b: bytes, diffs: Differences, where: str) -> None:
    da, db = _json(a), _json(b)
    if not isinstance(da, dict) or not isinstance(db, dict):
        diffs.add(f"{where}body rewritten though it is not a JSON object")
        return
    if {k: v for k, v in da.items() if k not in REWRITABLE_KEYS} != {
        k: v for k, v in db.items() if k not in REWRITABLE_KEYS
    }:
        diffs.add(f"{where}body differs beyond the documented rewrites")
    if "rerank" in db:
        diffs.add(f"{where}the rerank object reached the server")
    if "from" in db and db["from"] != 0:
        diffs.add(f"{where}from not widened to 0")
    size = da.get("size", 10)
    if isinstance(size, int) and db.get("size", 10) < size:
        diffs.add(f"{where}size narrowed")


# ------------------------------------------------------------------- client received


def client_headers(answer: Answer) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in answer.headers if k.lower() not in CLIENT_HEADER_IGNORE]


def compare_answers(
    direct: Answer,
    via: Answer,
    *,
    reference: Answer | None,
    diffs: Differences,
    ids: frozenset[str],
    outcome: str | None = None,
) -> None:
    """``outcome``: the ``X-Rerank`` the sidecar answered with; None where the client did
    not show it (read it from ``via``'s headers when it has them)."""
    if direct.status != via.status:
        diffs.add(f"status {via.status} != {direct.status}")
    if client_headers(direct) != client_headers(via):
        diffs.add(f"headers {client_headers(via)} != {client_headers(direct)}")
    d_raw, v_raw = direct.decoded, untoken(via.decoded)
    d_json, v_json = _json(d_raw), _json(v_raw)
    if d_json is None or v_json is None:
        if normalize_ids(d_raw, ids) != normalize_ids(v_raw, ids):
            diffs.add("non-JSON body differs")
        return
    if d_raw.startswith(b"{\n") != v_raw.startswith(b"{\n"):
        diffs.add("pretty-printed one way and not the other")
    ref = _json(reference.decoded) if reference is not None else None
    outcome = outcome if outcome is not None else via.header("X-Rerank")
    reranked = None if outcome is None else outcome.split(";")[0] in RERANKED
    _compare_doc(
        normalize(d_json, ids), normalize(v_json, ids), normalize(ref, ids), diffs, "", reranked
    )


def _hit_key(hit: Any) -> str:
    return json.dumps(hit, sort_keys=True)


def _plain_hit(hit: Any) -> Any:
    if isinstance(hit, dict):
        return {k: v for k, v in hit.items() if k not in ("_score", "sort", "_explanation")}
    return hit


def _compare_doc(
    d: Any, v: Any, ref: Any, diffs: Differences, where: str, reranked: bool | None
) -> None:
    """``reranked`` None: not known (a client hid the header, or an ``_msearch`` item)."""
    if isinstance(d, dict) and isinstance(v, dict) and "responses" in d and "responses" in v:
        dr, vr = d["responses"], v["responses"]
        rr = ref.get("responses") if isinstance(ref, dict) else None
        if len(dr) != len(vr):
            diffs.add(f"{where}msearch answered {len(vr)} searches, not {len(dr)}")
            return
        for i, (a, b) in enumerate(zip(dr, vr, strict=True)):
            r = rr[i] if isinstance(rr, list) and i < len(rr) else None
            item = False if reranked is False else None
            _compare_doc(a, b, r, diffs, f"{where}responses[{i}].", item)
        rest_d = {k: x for k, x in d.items() if k != "responses"}
        rest_v = {k: x for k, x in v.items() if k != "responses"}
        if rest_d != rest_v:
            diffs.add(f"{where}msearch envelope differs")
        return
    if reranked is False or (reranked is None and d == v):
        if d != v:
            diffs.add(f"{where}body differs: {_short(v)} != {_short(d)}")
        return
    if not isinstance(d, dict) or not isinstance(v, dict):
        diffs.add(f"{where}body differs: {_short(v)} != {_short(d)}")
        return
    _compare_reranked(d, v, ref, diffs, where)


def _compare_reranked(
    d: dict[str, Any], v: dict[str, Any], ref: Any, diffs: Differences, where: str
) -> None:
    d_hits = d.get("hits", {})
    v_hits = v.get("hits", {})
    if not isinstance(d_hits, dict) or not isinstance(v_hits, dict):
        diffs.add(f"{where}reranked answer without hits")
        return
    outside_d = {**d, "hits": {k: x for k, x in d_hits.items() if k not in ("hits", "max_score")}}
    outside_v = {**v, "hits": {k: x for k, x in v_hits.items() if k not in ("hits", "max_score")}}
    if outside_d != outside_v:
        diffs.add(f"{where}reranked answer differs outside its hits")
    page_d = d_hits.get("hits", [])
    page_v = v_hits.get("hits", [])
    if len(page_d) != len(page_v):
        diffs.add(f"{where}page of {len(page_v)} hits, directly {len(page_d)}")
    scores = [h.get("_score") for h in page_v if isinstance(h, dict)]
    if all(isinstance(x, int | float) for x in scores) and any(
        a < b for a, b in itertools.pairwise(scores)
    ):
        diffs.add(f"{where}_score rises down the page: {scores}")
    ref_hits = ref.get("hits", {}).get("hits", []) if isinstance(ref, dict) else None
    pool: dict[str, list[Any]] = {}
    for h in ref_hits if ref_hits is not None else page_d:
        pool.setdefault(_hit_key(_plain_hit(h)), []).append(h)
    for hit in page_v:
        same = pool.get(_hit_key(_plain_hit(hit))) or []
        if not same:
            diffs.add(f"{where}hit not in the server's answer: {_short(hit)}")
            continue
        _compare_explanation(same.pop(0), hit, diffs, where)


def _compare_explanation(server: Any, hit: Any, diffs: Differences, where: str) -> None:
    """A served hit's ``_explanation`` explains its ``_score``, with the server's own
    explanation of the hit among its details."""
    if not isinstance(server, dict) or "_explanation" not in server:
        if isinstance(hit, dict) and "_explanation" in hit:
            diffs.add(f"{where}an _explanation the server did not give")
        return
    ours = hit.get("_explanation") if isinstance(hit, dict) else None
    if not isinstance(ours, dict) or ours.get("value") != hit.get("_score"):
        diffs.add(f"{where}_explanation does not explain the _score served: {_short(ours)}")
    elif server["_explanation"] not in (ours.get("details") or []):
        diffs.add(f"{where}the server's own _explanation is not kept: {_short(ours)}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) < 300 else text[:300] + "..."
