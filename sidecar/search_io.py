"""Request and response plumbing shared by the ``_search`` and ``_msearch`` handlers."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sidecar.errors import BadRequest, UpstreamBadResponse
from sidecar.handlers.passthrough import relay
from sidecar.jsonutil import loads
from sidecar.keys import UPSTREAM
from sidecar.rerank.engine import Outcome, RerankEngine, ScoredWindow
from sidecar.rerank.respond import ScoreOptions
from sidecar.upstream import BufferedResponse, end_to_end_headers, upstream_url

RERANK_HEADER = "X-Rerank"
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_body(raw: bytes, encoding: str | None, limit: int) -> bytes | None:
    """Undo Content-Encoding (bounded); None for an encoding we do not read."""
    if not encoding or encoding == "identity":
        return raw
    wbits = _ENCODINGS.get(encoding.lower())
    if wbits is None:
        return None
    try:
        out = zlib.decompressobj(wbits).decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BadRequest("request body is not valid " + encoding) from exc
    if len(out) > limit:
        raise BadRequest(f"decompressed request body is larger than {limit} bytes")
    return out


def indices_of(index: str) -> list[str]:
    return [i for i in index.split(",") if i] if index else []


def with_header(resp: web.Response, outcome: Outcome) -> web.Response:
    resp.headers[RERANK_HEADER] = outcome.header
    return resp


def score_options(engine: RerankEngine, index: str) -> ScoreOptions:
    rc = engine.config.rerank
    entry = engine.docs.entry(index) if index else None
    return ScoreOptions(
        mode=(entry.score_mode if entry and entry.score_mode else rc.score_mode),
        fusion=rc.fusion,
        boost_fields=tuple(entry.boost_fields.items()) if entry else (),
        min_score=rc.min_score,
        annotate_field=rc.annotate_field,
    )


def status_body(
    outcome: Outcome, engine: RerankEngine, scored: ScoredWindow | None
) -> dict[str, Any]:
    status: dict[str, Any] = {"status": outcome.status}
    if outcome.reason:
        status["reason"] = outcome.reason
    if scored is not None and scored.scores is not None:
        status["model"] = engine.model_name
        status["reranked"] = len(scored.scores)
    return status


def upstream_headers(request: web.Request, body_rewritten: bool) -> CIMultiDict[str]:
    headers = end_to_end_headers(request.headers)
    if body_rewritten:
        headers.popall("Content-Length", None)
        headers.popall("Content-Encoding", None)
        headers["Content-Type"] = "application/json"
    # The sidecar must read ES's answer on the rerank path; loopback/LAN bytes are cheap.
    headers.popall("Accept-Encoding", None)
    return headers


def url_without(request: web.Request, base: URL, drop: Sequence[str]) -> URL:
    if not drop:
        return upstream_url(base, request)
    query = [(k, v) for k, v in request.rel_url.query.items() if k not in drop]
    rel = request.rel_url.with_query(query)
    return upstream_url(base, request, rel.raw_path_qs)


async def forward(
    request: web.Request, body: bytes | None, outcome: Outcome, *, rewritten: bool = False
) -> web.StreamResponse:
    """Send a search that is not reranked to ES and stream the answer back unchanged (never
    buffered, so a huge aggregation or a large page costs the sidecar no memory)."""
    upstream = request.app[UPSTREAM]
    headers = end_to_end_headers(request.headers)
    if rewritten:
        headers.popall("Content-Length", None)
        headers.popall("Content-Encoding", None)
    return await relay(
        request,
        upstream_url(upstream.base, request),
        headers,
        body,
        extra_headers={RERANK_HEADER: outcome.header},
    )


def parse_es(resp: BufferedResponse) -> Any:
    try:
        return loads(resp.body)
    except ValueError as exc:
        raise UpstreamBadResponse(
            "Elasticsearch returned a search response that is not valid JSON"
        ) from exc
