"""Decide, from a search request alone, whether and how to rerank it.

:func:`plan_search` takes the client's body (already parsed) and URL parameters and returns a
:class:`SearchPlan`: either *passthrough* with a reason, or *rerank* with what ES is to
receive instead of the client's request. These are the only rewrites (README, "What happens
to a search"):

* the sidecar's own ``rerank`` object is removed;
* ``from``/``size`` are widened to the window (in the body; in the URL when the search has
  no body, so a body-less ``?q=`` search stays body-less);
* ``_source`` is widened to the text fields the model reads, only when the client's own
  filter (``_source: false``, includes/excludes, ``stored_fields`` without ``_source``)
  would hide them; the client's filter is applied to the hits afterwards;
* ``filter_path`` is taken off the URL and applied to the final response by the sidecar,
  with ES's semantics (a ``filter_path`` that keeps no hit is passed through instead).

Searches whose meaning depends on ES's own order or on a continuation are passed through
with a reason: ``scroll``, ``search_after``, ``pit`` (the next page continues from the last
hit's sort values), a sort that is not ``_score``, ``rescore`` (the client's own second
stage; ``rerank.rescore: rerank`` overrides it), and a page that does not fit the index's
``max_result_window`` (learned from ES's refusals, :mod:`sidecar.rerank.windows`).

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
from sidecar.rerank.filter_path import FilterPath, parse_filter_path
from sidecar.rerank.index_config import IndexRules, IndexSettings
from sidecar.rerank.query_text import extract_query_text, lucene_free_text
from sidecar.rerank.source_filter import (
    SourceFilter,
    hides_any,
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
    #: The body to send to ES (the client's, minus ``rerank``, possibly widened); None for
    #: a search without a body.
    body: dict[str, Any] | None
    #: Settings for ``index``, resolved once.
    settings: IndexSettings
    #: ``on`` or ``shadow`` when reranked (a search rolled out to ``off`` is skipped).
    mode: ModeName = "off"
    #: URL parameters to drop before forwarding (moved into the body, or re-set below).
    drop_params: tuple[str, ...] = ()
    #: URL parameters to set (a search without a body is widened in its URL).
    set_params: tuple[tuple[str, str], ...] = ()
    query_text: str = ""
    instruction: str | None = None
    window: int = 0
    from_: int = 0
    size: int = DEFAULT_SIZE
    fields: tuple[str, ...] | None = None
    #: The index expression of the search (path or ``_msearch`` header); hits without an
    #: ``_index`` are read with its settings.
    index: str = ""
    #: The client's own _source filter, re-applied to hits after reranking (identity when
    #: ES was asked for exactly what the client asked for).
    source_filter: SourceFilter = field(default_factory=SourceFilter)
    #: The client's ``filter_path``, applied by the sidecar to the final response.
    filter_path: FilterPath | None = None
    #: Whether the client's body is rewritten (a ``rerank`` object removed or widening).
    rewrites_body: bool = False

    @property
    def rerank(self) -> bool:
        return self.skip_reason is None

    @property
    def es_size(self) -> int:
        """How many hits ES is asked for (from 0)."""
        return max(self.window, self.from_ + self.size)


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def parse_options(value: Any, config: RerankConfig | None = None) -> RerankOptions:
    """The ``rerank`` object, validated; with ``config``, ``query`` and ``instruction`` longer
    than ``max_query_chars`` / ``max_instruction_chars`` are refused (400)."""
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
    if config is not None:
        for key, text, limit in (
            ("query", query, config.max_query_chars),
            ("instruction", instruction, config.max_instruction_chars),
        ):
            if text is not None and len(text) > limit:
                raise IllegalArgument(
                    f"[rerank.{key}] is longer than {limit} characters (rerank.max_{key}_chars)"
                )
    return RerankOptions(query, instruction, fields, window, enabled)


def strip_options(
    body: Any, config: RerankConfig | None = None
) -> tuple[Any, RerankOptions | None]:
    """Remove the sidecar's ``rerank`` object; the rest of the body is left as it was."""
    if isinstance(body, dict) and RERANK_KEY in body:
        options = parse_options(body[RERANK_KEY], config)
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


def _is_none_marker(value: Any) -> bool:
    return bool(value == "_none_" or value == ["_none_"])


def plan_search(
    body: Any,
    params: Mapping[str, str],
    config: RerankConfig,
    rules: IndexRules,
    index: str,
    mode: ModeName,
    *,
    window_limit: int | None = None,
    force_skip: str | None = None,
) -> SearchPlan:
    """Plan one search that rollout put in ``mode``. Raises IllegalArgument only for a
    malformed ``rerank`` object (even when rolled out to ``off``: ES would refuse it).
    ``window_limit`` is the index's ``max_result_window`` when the sidecar has learned it;
    ``force_skip`` is a reason found outside the body (``format``: the answer will not be
    JSON; ``filter_path``: an ``_msearch`` whose ``filter_path`` keeps no hit)."""
    settings = rules.resolve(index)
    has_body = body is not None
    stripped, options = strip_options(body, config)
    had_options = options is not None
    if stripped is None:
        stripped = {}
    if not isinstance(stripped, dict):
        return SearchPlan("unparsed_body", None, settings, index=index)
    options = options or RerankOptions()
    as_sent = stripped if has_body else None

    def skip(reason: str) -> SearchPlan:
        return SearchPlan(reason, as_sent, settings, index=index, rewrites_body=had_options)

    if options.enabled is False:
        return skip("disabled_by_request")
    if force_skip:
        return skip(force_skip)
    if "scroll" in params:
        return skip("scroll")
    if "pit" in stripped:
        # The next page continues from this page's last sort values: a reordered page would
        # repeat and lose hits.
        return skip("pit")
    if "search_after" in stripped:
        return skip("search_after")
    if "sort" in params or ("sort" in stripped and not _sort_is_score(stripped["sort"])):
        return skip("sort")
    if "rescore" in stripped and config.rescore != "rerank":
        return skip("rescore")
    if _is_none_marker(stripped.get("stored_fields")) or params.get("stored_fields") == "_none_":
        # No _id, no _source: nothing to read or to tell the hits apart by.
        return skip("stored_fields_none")

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
        query = lucene_free_text(params["q"]) or None
    if not query:
        return skip("no_query_text")
    # Query text read from the ES query is cut, not refused: ES accepts the search.
    query = query[: config.max_query_chars]

    window = options.window or settings.window
    if window > config.max_window:
        raise IllegalArgument(
            f"[rerank.window] {window} is larger than the configured maximum {config.max_window}"
        )
    if window_limit is not None:
        if from_ + size > window_limit:
            # ES refuses the client's own page on this index: its answer, unchanged.
            return skip("result_window")
        window = min(window, window_limit)
    if from_ >= window:
        return skip("beyond_window")

    filter_path = None
    if params.get("filter_path"):
        filter_path = parse_filter_path(params["filter_path"])
        if not filter_path.wants_below(("hits", "hits")):
            # The client does not want hits: there is nothing to reorder.
            return skip("filter_path")

    forward = copy.copy(stripped)
    drop: list[str] = []
    set_params: list[tuple[str, str]] = []
    paging = {"from": 0, "size": max(window, from_ + size)}
    if has_body:
        forward.update(paging)
        drop += [p for p in ("from", "size") if p in params]
    else:
        set_params += [(k, str(v)) for k, v in paging.items()]
    if filter_path is not None:
        drop.append("filter_path")

    source_filter = SourceFilter()
    body_filter = parse_source_spec(stripped.get("_source")) if "_source" in stripped else None
    param_filter = parse_source_params(
        params.get("_source"), params.get("_source_includes"), params.get("_source_excludes")
    )
    client_filter = param_filter or body_filter
    if client_filter is None and ("_source" in stripped):
        return skip("unparsed_source_filter")
    if client_filter is None and ("stored_fields" in stripped or "stored_fields" in params):
        # ES returns no _source when stored_fields are asked for and _source is not.
        client_filter = SourceFilter(enabled=False)
    needed = rules.source_fields(options.fields)
    if client_filter is not None and hides_any(client_filter, needed):
        # Ask ES for the client's view plus the text fields; the hits get the client's
        # view back after reranking.
        source_filter = client_filter
        widened = client_filter.widened(needed)
        drop += [p for p in _SOURCE_PARAMS if p in params]
        if has_body:
            forward["_source"] = widened.as_spec()
        else:
            set_params += widened.as_params()
    if mode == "off":
        # Everything above still ran: a bad ``rerank`` object is refused either way, and a
        # search that could not be reranked anyway keeps its own reason.
        return skip("rollout_off")

    return SearchPlan(
        skip_reason=None,
        body=forward if has_body else None,
        settings=settings,
        mode=mode,
        drop_params=tuple(dict.fromkeys(drop)),
        set_params=tuple(set_params),
        query_text=query,
        instruction=options.instruction or settings.instruction,
        window=window,
        from_=from_,
        size=size,
        fields=options.fields,
        index=index,
        source_filter=source_filter,
        filter_path=filter_path,
        rewrites_body=has_body,
    )
