"""The direct rerank API: ``POST /_sidecar/v1/rerank`` and its alias ``POST /_sidecar/rerank``
(also at the Cohere-compatible root paths ``/v1/rerank`` and ``/rerank`` when
``api.cohere_root_path`` is on; otherwise those paths are ES's, like any path outside
``/_sidecar/``).

It is a compute endpoint, so it is guarded like the sidecar's other surfaces
(:mod:`sidecar.http.access`): peers in ``api.allow_from`` only (loopback by default), with
``api.token`` when one is set. Bodies must be ``application/json`` (415 otherwise: a form
post from another site cannot reach it), and browser pages from other origins need
``api.cors_origins``. ``query`` and ``instruction`` are capped by
``tuning.limits.max_query_chars`` and ``max_instruction_chars`` (400 past them); each
document is cut to ``tuning.limits.max_chars_per_document`` characters.

Two request shapes, told apart by their documents field:

* Cohere/Jina: ``{model?, query, documents: [str | {text}], top_n?, return_documents?,
  instruction?}`` -> ``{model, results: [{index, relevance_score, document?}], usage}``,
  results sorted by score, best first;
* the seeds' (TEI-like) shape: ``{query, texts: [str], instruction?}`` ->
  ``{scores, ranks}`` in the order of ``texts``, ``ranks[i]`` being the 1-based rank of
  ``texts[i]``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sidecar.admission.controller import Asker
from sidecar.admission.ledger import client_key
from sidecar.config import ApiConfig, public_name
from sidecar.deadline import Deadline
from sidecar.errors import (
    BadRequest,
    IllegalArgument,
    InputTooLong,
    Overloaded,
    RerankTimeout,
    RerankUnavailable,
    ServiceUnavailable,
    SidecarError,
)
from sidecar.http.access import Cors, Guard
from sidecar.http.body import read_body
from sidecar.http.trace import trace_of
from sidecar.jsonutil import json_response, parse_body
from sidecar.keys import CONFIG, ENGINE, ROLLOUT
from sidecar.scoring.base import ScoreResult

EMPTY = "query and documents cannot be empty"
PATHS = ("/_sidecar/v1/rerank", "/_sidecar/rerank")
#: The Cohere-compatible paths, served only with ``api.cohere_root_path: true``.
ROOT_PATHS = ("/v1/rerank", "/rerank")


class UnsupportedMediaType(SidecarError):
    status = 415
    error_type = "media_type_header_exception"


@dataclass(frozen=True)
class TextLimits:
    max_query_chars: int = 2048
    max_instruction_chars: int = 2048
    max_chars_per_document: int = 65536


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


def _document_text(value: Any, field: str, index: int, limit: int) -> str:
    if isinstance(value, str):
        return value[:limit]
    if field == "documents" and isinstance(value, dict) and isinstance(value.get("text"), str):
        return str(value["text"])[:limit]
    shape = "a string or an object with a string [text]" if field == "documents" else "a string"
    raise IllegalArgument(f"[{field}][{index}] must be {shape}")


def _capped(value: str | None, key: str, limit: int, setting: str) -> str | None:
    if value is not None and len(value) > limit:
        raise IllegalArgument(f"[{key}] is longer than {limit} characters ({setting})")
    return value


def parse_request(
    body: Any, *, max_documents: int, limits: TextLimits = TextLimits()
) -> RerankRequest:
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
    _capped(query, "query", limits.max_query_chars, "tuning.limits.max_query_chars")
    instruction = _capped(
        _optional_str(body, "instruction"),
        "instruction",
        limits.max_instruction_chars,
        "tuning.limits.max_instruction_chars",
    )
    cut = limits.max_chars_per_document
    return RerankRequest(
        query=query,
        documents=[_document_text(doc, field, i, cut) for i, doc in enumerate(raw_docs)],
        field=field,
        instruction=instruction,
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
        "model": req.model or public_name(model_name),
        "results": results,
        "usage": {"total_tokens": result.tokens},
    }


def require_json(request: web.BaseRequest) -> None:
    """Only JSON bodies: a browser sends a cross-site form or text/plain post without asking
    first, but never application/json. The reason does not quote what was sent."""
    mime = request.content_type.lower()
    if mime != "application/json" and not (
        mime.startswith("application/") and mime.endswith("+json")
    ):
        raise UnsupportedMediaType("the rerank API accepts only Content-Type: application/json")


async def rerank(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    require_json(request)
    raw = await read_body(request, config.tuning.http)
    limits = config.tuning.limits
    text_limits = TextLimits(
        limits.max_query_chars, limits.max_instruction_chars, limits.max_chars_per_document
    )
    req = parse_request(
        parse_body(raw or b""), max_documents=config.api.max_documents, limits=text_limits
    )
    engine = request.app[ENGINE]
    if not engine.scorer.ready:
        raise ServiceUnavailable("reranker not ready")
    caller = request.app[ROLLOUT].client(request.remote, request.headers)
    deadline = Deadline.after(config.api.timeout_s)
    try:
        async with asyncio.timeout(config.api.timeout_s):
            # Through the same fair queue as searches, in parts: a 1,000-document request
            # takes turns instead of pushing every search past its budget.
            asker = Asker(client_key(caller.addr), trace_of(request).request_id)
            result = await engine.score_all(
                asker, req.query, req.documents, req.instruction, deadline
            )
    except TimeoutError as exc:
        raise ServiceUnavailable("reranker timed out") from exc
    except InputTooLong as exc:
        # The request's fault, not the model's: say what to change.
        raise IllegalArgument(str(exc)) from exc
    except RerankUnavailable as exc:
        raise _unavailable(exc) from exc
    return json_response(render(req, result, engine.model_name))


def add_routes(app: web.Application, config: ApiConfig) -> None:
    guard = Guard("rerank API", config.allow_from, config.token)
    cors = Cors(config.cors_origins)
    handler = guard.wrap(cors.wrap(rerank))
    # A preflight never carries credentials: it is checked by peer and origin only.
    preflight = guard.wrap(cors.preflight, authenticate=False)
    for path in PATHS + (ROOT_PATHS if config.cohere_root_path else ()):
        app.router.add_post(path, handler)
        app.router.add_route("OPTIONS", path, preflight)
