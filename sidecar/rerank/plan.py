"""Decide, from a search request alone, whether and how to rerank it.

:func:`plan_search` takes the client's body (already parsed) and URL parameters and returns a
:class:`SearchPlan`: either *passthrough* with a reason, or *rerank* with the body to send to
ES (the sidecar's own ``rerank`` object removed, ``from``/``size`` widened to the window,
``_source`` widened when the client's filter would hide the text fields).

Paging: with window W, a page ``[from, from+size)`` that starts inside the window is served
from the reranked first W hits followed by the rest in ES order; a page that starts at or
past W is passed through untouched. Either way every hit appears exactly once across pages.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.config import ModeName, RerankConfig
from sidecar.errors import IllegalArgument
from sidecar.rerank.index_config import IndexRules, IndexSettings
from sidecar.rerank.query_text import extract_query_text
from sidecar.rerank.source_filter import (
    SourceFilter,
    parse_source_params,
    parse_source_spec,
)

RERANK_KEY = "rerank"
DEFAULT_SIZE = 10
_MAX_INT = 2**31 - 1
_SOURCE_PARAMS = ("_source", "_source_includes", "_source_excludes")


@dataclass(frozen=True)
class RerankOptions:
    """The optional ``"rerank": {...}`` object a request may carry."""

    query: str | None = None
    instruction: str | None = None
    fields: tuple[str, ...] | None = None
    window: int | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class SearchPlan:
    #: None when the request is reranked; else why not (goes into X-Rerank).
    skip_reason: str | None
    #: The body to send to ES (the client's, minus ``rerank``, possibly widened).
    body: dict[str, Any] | None
    #: Settings for ``index``, resolved once.
    settings: IndexSettings
    #: ``on`` or ``shadow`` when reranked (a search rolled out to ``off`` is skipped).
    mode: ModeName = "off"
    #: URL parameters to drop before forwarding (moved into the body).
    drop_params: tuple[str, ...] = ()
    query_text: str = ""
    instruction: str | None = None
    window: int = 0
    from_: int = 0
    size: int = DEFAULT_SIZE
    fields: tuple[str, ...] | None = None
    #: The index expression of the search (path or ``_msearch`` header); hits without an
    #: ``_index`` are read with its settings.
    index: str = ""
    #: The client's own _source filter, re-applied to hits after reranking.
    source_filter: SourceFilter = field(default_factory=SourceFilter)

    @property
    def rerank(self) -> bool:
        return self.skip_reason is None


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def parse_options(value: Any) -> RerankOptions:
    if not isinstance(value, dict):
        raise IllegalArgument("[rerank] must be an object")
    allowed = {"query", "instruction", "fields", "window", "enabled"}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise IllegalArgument(f"[rerank] unknown field [{unknown[0]}]")
    query = value.get("query")
    if query is not None and not isinstance(query, str):
        raise IllegalArgument("[rerank.query] must be a string")
    instruction = value.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise IllegalArgument("[rerank.instruction] must be a string")
    fields = value.get("fields")
    if fields is not None:
        if isinstance(fields, str):
            fields = [fields]
        if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
            raise IllegalArgument("[rerank.fields] must be a list of field names")
        fields = tuple(fields)
    window = value.get("window")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or window < 1
    ):
        raise IllegalArgument("[rerank.window] must be a positive integer")
    enabled = value.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise IllegalArgument("[rerank.enabled] must be true or false")
    return RerankOptions(query, instruction, fields, window, enabled)


def strip_options(body: Any) -> tuple[Any, RerankOptions | None]:
    """Remove the sidecar's ``rerank`` object; the rest of the body is left as it was."""
    if isinstance(body, dict) and RERANK_KEY in body:
        options = parse_options(body[RERANK_KEY])
        rest = {k: v for k, v in body.items() if k != RERANK_KEY}
        return rest, options
    return body, None


def _sort_is_score(sort: Any) -> bool:
    items = sort if isinstance(sort, list) else [sort]
    for item in items:
        if item == "_score":
            continue
        if isinstance(item, dict) and list(item) == ["_score"]:
            order = item["_score"]
            if order in ("desc", None) or (
                isinstance(order, dict) and order.get("order", "desc") == "desc"
            ):
                continue
        return False
    return True


def plan_search(
    body: Any,
    params: Mapping[str, str],
    config: RerankConfig,
    rules: IndexRules,
    index: str,
    mode: ModeName,
) -> SearchPlan:
    """Plan one search that rollout put in ``mode``. Raises IllegalArgument only for a
    malformed ``rerank`` object (even when rolled out to ``off``: ES would refuse it)."""
    settings = rules.resolve(index)
    stripped, options = strip_options(body)
    if stripped is None:
        stripped = {}
    if not isinstance(stripped, dict):
        return SearchPlan("unparsed_body", None, settings, index=index)
    options = options or RerankOptions()

    def skip(reason: str) -> SearchPlan:
        return SearchPlan(reason, stripped, settings, index=index)

    if options.enabled is False:
        return skip("disabled_by_request")
    if "scroll" in params:
        return skip("scroll")
    if "search_after" in stripped:
        return skip("search_after")
    if "sort" in params or ("sort" in stripped and not _sort_is_score(stripped["sort"])):
        return skip("sort")

    size = _int_param(params, "size")
    size = stripped.get("size", DEFAULT_SIZE) if size is None else size
    from_ = _int_param(params, "from")
    from_ = stripped.get("from", 0) if from_ is None else from_
    if (
        not isinstance(size, int)
        or not isinstance(from_, int)
        or isinstance(size, bool)
        or isinstance(from_, bool)
        or not 0 <= size <= _MAX_INT
        or not 0 <= from_ <= _MAX_INT
    ):
        # Not a page ES accepts (its from/size are 32-bit ints): ES gives its own answer.
        return skip("unparsed_paging")
    if size == 0:
        return skip("size_zero")

    query = options.query or extract_query_text(stripped.get("query"))
    if not query and params.get("q"):
        query = params["q"].strip()
    if not query:
        return skip("no_query_text")

    window = options.window or settings.window
    if window > config.max_window:
        raise IllegalArgument(
            f"[rerank.window] {window} is larger than the configured maximum {config.max_window}"
        )
    if from_ >= window:
        return skip("beyond_window")

    forward = copy.copy(stripped)
    forward["from"] = 0
    forward["size"] = max(window, from_ + size)
    drop = [p for p in ("from", "size") if p in params]

    source_filter = SourceFilter()
    body_filter = parse_source_spec(stripped.get("_source")) if "_source" in stripped else None
    param_filter = parse_source_params(
        params.get("_source"), params.get("_source_includes"), params.get("_source_excludes")
    )
    client_filter = param_filter or body_filter
    if client_filter is None and ("_source" in stripped):
        return skip("unparsed_source_filter")
    if client_filter is not None and not client_filter.is_identity:
        # Fetch everything, re-apply the client's filter after reading the text fields.
        source_filter = client_filter
        forward["_source"] = True
        drop += [p for p in _SOURCE_PARAMS if p in params]
    if mode == "off":
        # Everything above still ran: a bad ``rerank`` object is refused either way, and a
        # search that could not be reranked anyway keeps its own reason.
        return skip("rollout_off")

    return SearchPlan(
        skip_reason=None,
        body=forward,
        settings=settings,
        mode=mode,
        drop_params=tuple(drop),
        query_text=query,
        instruction=options.instruction or settings.instruction,
        window=window,
        from_=from_,
        size=size,
        fields=options.fields,
        index=index,
        source_filter=source_filter,
    )
