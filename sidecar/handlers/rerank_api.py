"""The direct rerank API: ``POST /v1/rerank`` and its alias ``POST /rerank``.

Two request shapes, told apart by their documents field:

* Cohere/Jina: ``{model?, query, documents: [str | {text}], top_n?, return_documents?,
  instruction?}`` -> ``{model, results: [{index, relevance_score, document?}], usage}``,
  results sorted by score, best first;
* the seeds' (TEI-like) shape: ``{query, texts: [str], instruction?}`` ->
  ``{scores, ranks}`` in the order of ``texts``, ``ranks[i]`` being the 1-based rank of
  ``texts[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sidecar.errors import (
    BadRequest,
    IllegalArgument,
    Overloaded,
    RerankTimeout,
    RerankUnavailable,
    ServiceUnavailable,
)
from sidecar.http.body import read_body
from sidecar.jsonutil import json_response, parse_body
from sidecar.keys import CONFIG, SCORER
from sidecar.scoring.base import ScoreResult

EMPTY = "query and documents cannot be empty"


@dataclass(frozen=True)
class RerankRequest:
    query: str
    documents: list[str]
    #: The field the documents came in: ``documents`` (Cohere/Jina) or ``texts`` (seeds).
    field: str
    instruction: str | None = None
    top_n: int | None = None
    return_documents: bool = False
    model: str | None = None


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise IllegalArgument(f"[{key}] must be a string")


def _optional_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise IllegalArgument(f"[{key}] must be a boolean")


def _optional_top_n(body: dict[str, Any]) -> int | None:
    value = body.get("top_n")
    if value is None:
        return None
    # bool is an int in Python, but `true` is not a count.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise IllegalArgument("[top_n] must be a positive integer")
    return value


def _document_text(value: Any, field: str, index: int) -> str:
    if isinstance(value, str):
        return value
    if field == "documents" and isinstance(value, dict) and isinstance(value.get("text"), str):
        return str(value["text"])
    shape = "a string or an object with a string [text]" if field == "documents" else "a string"
    raise IllegalArgument(f"[{field}][{index}] must be {shape}")


def parse_request(body: Any, *, max_documents: int) -> RerankRequest:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    field = "texts" if "texts" in body and "documents" not in body else "documents"
    query = body.get("query")
    raw_docs = body.get(field)
    if query is not None and not isinstance(query, str):
        raise IllegalArgument("[query] must be a string")
    if raw_docs is not None and not isinstance(raw_docs, list):
        raise IllegalArgument(f"[{field}] must be an array")
    if not query or not query.strip() or not raw_docs:
        raise IllegalArgument(EMPTY)
    if len(raw_docs) > max_documents:
        raise IllegalArgument(
            f"too many documents: {len(raw_docs)} (at most {max_documents} per request)"
        )
    return RerankRequest(
        query=query,
        documents=[_document_text(doc, field, i) for i, doc in enumerate(raw_docs)],
        field=field,
        instruction=_optional_str(body, "instruction"),
        top_n=_optional_top_n(body),
        return_documents=_optional_bool(body, "return_documents"),
        model=_optional_str(body, "model"),
    )


def _unavailable(exc: RerankUnavailable) -> ServiceUnavailable:
    """A reason safe for clients: the kind of failure, never the internal message."""
    if isinstance(exc, Overloaded):
        return ServiceUnavailable("reranker overloaded")
    if isinstance(exc, RerankTimeout):
        return ServiceUnavailable("reranker timed out")
    return ServiceUnavailable("reranker unavailable")


def ranks_of(scores: list[float]) -> list[int]:
    """1-based rank of each score, best first; ties keep the input order."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ranks = [0] * len(scores)
    for rank, index in enumerate(order, start=1):
        ranks[index] = rank
    return ranks


def render(req: RerankRequest, result: ScoreResult, model_name: str) -> dict[str, Any]:
    if req.field == "texts":
        return {"scores": result.scores, "ranks": ranks_of(result.scores)}
    order = sorted(range(len(result.scores)), key=lambda i: -result.scores[i])
    if req.top_n is not None:
        order = order[: req.top_n]
    results: list[dict[str, Any]] = []
    for index in order:
        entry: dict[str, Any] = {"index": index, "relevance_score": result.scores[index]}
        if req.return_documents:
            entry["document"] = {"text": req.documents[index]}
        results.append(entry)
    return {
        "model": req.model or model_name,
        "results": results,
        "usage": {"total_tokens": result.tokens},
    }


async def rerank(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    scorer = request.app[SCORER]
    raw = await read_body(request)
    req = parse_request(parse_body(raw or b""), max_documents=config.api.max_documents)
    if not scorer.ready:
        raise ServiceUnavailable("reranker not ready")
    try:
        result = await scorer.score(
            req.query, req.documents, req.instruction, timeout=config.api.timeout_s
        )
    except RerankUnavailable as exc:
        raise _unavailable(exc) from exc
    return json_response(render(req, result, scorer.info.name))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/rerank", rerank)
    app.router.add_post("/rerank", rerank)
