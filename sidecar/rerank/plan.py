"""Decide, from a search request alone, whether and how to rerank it.

:func:`plan_search` takes the client's body (already parsed) and URL parameters and returns a
:class:`SearchPlan`: either *passthrough* with a reason, or *rerank* with what ES is to
receive instead of the client's request. These are the only rewrites (README, "What happens
to a search"):

* the sidecar's own ``rerank`` object is removed;
* ``from``/``size`` are widened to the window (in the body; in the URL when the search has
  no body, so a body-less ``?q=`` search stays body-less);
* ``_source`` is widened to the text fields the model reads, only when the client's own
  filter (``_source: false``, includes/excludes, ``stored_fields`` or ``script_fields``
  without ``_source``) would hide them; the client's filter is applied to the hits afterwards;
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
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import orjson

from sidecar.config import LimitsTuning, ModeName, RerankConfig
from sidecar.errors import IllegalArgument
from sidecar.reasons import Reason
from sidecar.rerank.filter_path import FilterPath, parse_filter_path
from sidecar.rerank.identity import digest_parts
from sidecar.rerank.index_config import IndexRules, IndexSettings
from sidecar.rerank.query_text import TextField, lucene_free_text, read_query
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
    #: Add the ``_rerank`` annotations to this answer (``rerank.annotate`` for all).
    explain: bool | None = None


@dataclass(frozen=True)
class Tracked:
    """A search the query log follows (``ubi``): its ``query_id`` (an interleaved search's
    pages continue one list by it), and the ``_source`` field its hits are known by
    (``_id`` when None)."""

    query_id: str
    object_id_field: str | None = None
    #: The client chose the ``query_id`` (and sends it with every page); else the sidecar
    #: made one for this request alone.
    given: bool = True


@dataclass(frozen=True)
class SearchPlan:
    #: None when the request is reranked; else why not (goes into X-Rerank).
    skip_reason: Reason | None
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
    #: The query log follows this search (None: no log).
    tracked: Tracked | None = None
    #: The search apart from its page (a digest): the same for every page of it, so a
    #: later page continues the order its first page served (:mod:`sidecar.rerank.pages`).
    #: "" when the search has none.
    search_key: str = ""
    #: The name the ``_rerank`` annotations are added under (None: not added).
    annotate: str | None = None
    #: The client asked ES to explain each hit's score (``explain``): the sidecar explains
    #: the score it serves.
    explain: bool = False
    #: The client sorted by ``_score`` (each hit's ``sort`` values are its score).
    sort_by_score: bool = False

    @property
    def rerank(self) -> bool:
        return self.skip_reason is None

    @property
    def es_size(self) -> int:
        """How many hits ES is asked for (from 0)."""
        return max(self.window, self.from_ + self.size)


def page_start(plan: SearchPlan) -> int:
    """Where the client's page starts: the plan's ``from`` when it is reranked, else the
    ``from`` of the body it sent (0 when it has none ES would take)."""
    if plan.rerank:
        return plan.from_
    start = plan.body.get("from", 0) if isinstance(plan.body, dict) else 0
    return start if isinstance(start, int) and not isinstance(start, bool) and start > 0 else 0


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def parse_options(value: Any, limits: LimitsTuning | None = None) -> RerankOptions:
    """The ``rerank`` object, validated; with ``limits``, ``query`` and ``instruction`` longer
    than ``max_query_chars`` / ``max_instruction_chars`` are refused (400)."""
    if not isinstance(value, dict):
        raise IllegalArgument("[rerank] must be an object")
    allowed = {"query", "instruction", "fields", "window", "enabled", "explain"}
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
    enabled, explain = value.get("enabled"), value.get("explain")
    for key, flag in (("enabled", enabled), ("explain", explain)):
        if flag is not None and not isinstance(flag, bool):
            raise IllegalArgument(f"[rerank.{key}] must be true or false")
    if limits is not None:
        for key, text, limit in (
            ("query", query, limits.max_query_chars),
            ("instruction", instruction, limits.max_instruction_chars),
        ):
            if text is not None and len(text) > limit:
                raise IllegalArgument(
                    f"[rerank.{key}] is longer than {limit} characters "
                    f"(tuning.limits.max_{key}_chars)"
                )
    return RerankOptions(query, instruction, fields, window, enabled, explain)


def strip_options(
    body: Any, limits: LimitsTuning | None = None
) -> tuple[Any, RerankOptions | None]:
    """Remove the sidecar's ``rerank`` object; the rest of the body is left as it was."""
    if isinstance(body, dict) and RERANK_KEY in body:
        options = parse_options(body[RERANK_KEY], limits)
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
    force_skip: Reason | None = None,
    limits: LimitsTuning | None = None,
    tracked: Tracked | None = None,
    text_field: TextField | None = None,
) -> SearchPlan:
    """Plan one search that rollout put in ``mode``; IllegalArgument only for a malformed
    ``rerank`` object (even rolled out to ``off``: ES would refuse it). ``window_limit``:
    the learned ``max_result_window``; ``force_skip``: a reason found outside the body
    (``format``, an ``_msearch``'s ``filter_path``); ``tracked``: the query log follows it
    (``ext.ubi`` already taken out of ``body``, which counts as rewritten); ``text_field``:
    whether words a ``query_string`` scopes to a field are query text (else a filter)."""
    limits = limits or LimitsTuning()
    settings = rules.resolve(index)
    stripped, options = strip_options(body, limits)
    if not isinstance(stripped if stripped is not None else {}, dict):
        return SearchPlan(Reason.UNPARSED_BODY, None, settings, index=index, tracked=tracked)
    had = options is not None or tracked is not None
    search = _Search(stripped or {}, params, body is not None, had, tracked, text_field)
    options = options or RerankOptions()
    skip = partial(search.skipped, settings=settings, index=index)
    if options.enabled is False:
        return skip(Reason.DISABLED_BY_REQUEST)
    reason = force_skip or _continuation(search, config) or _min_score(search, settings)
    page = _page(search, options, limits, settings) if reason is None else reason
    if isinstance(page, Reason):
        return skip(page)
    from_, size, query = page
    window = _window(options.window or settings.window, limits, window_limit, from_, size)
    if isinstance(window, Reason):
        return replace(skip(window), query_text=query)  # the query log's user_query
    forward = _forward(search, rules, options, max(window, from_ + size))
    if isinstance(forward, Reason):
        return replace(skip(forward), query_text=query)
    if mode == "off":  # after all the above: a bad ``rerank`` object is refused either way,
        return replace(skip(Reason.ROLLOUT_OFF), query_text=query)  # other reasons kept
    body_sent = forward.body if search.has_body else None
    return replace(
        forward.plan(body_sent, settings, mode, index, rewrites_body=search.has_body),
        tracked=tracked,
        query_text=query,
        instruction=options.instruction or settings.instruction,
        window=window,
        from_=from_,
        size=size,
        fields=options.fields,
        annotate=config.annotate_field if config.annotate or options.explain else None,
        explain=search.explains,
        sort_by_score="sort" in search.body,
        search_key=_search_key(search, index, query, window, options, settings),
    )


def _search_key(
    search: _Search,
    index: str,
    query: str,
    window: int,
    options: RerankOptions,
    settings: IndexSettings,
) -> str:
    """The search apart from its page: its index, body and URL parameters but ``from``
    and ``size``, and what it is reranked by (query, instruction, window, fields)."""
    body = {k: v for k, v in search.body.items() if k not in ("from", "size")}
    params = sorted((k, v) for k, v in search.params.items() if k not in ("from", "size"))
    try:
        data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        listed = orjson.dumps(params)
    except (TypeError, orjson.JSONEncodeError):
        return ""  # nested past what can be written: its pages are not continued
    fields = "\x00".join(options.fields or ())
    instruction = options.instruction or settings.instruction or ""
    return digest_parts(
        ["page-order", index, data, listed, query, instruction, str(window), fields]
    )


@dataclass(frozen=True)
class _Search:
    """The client's search as planning reads it."""

    body: dict[str, Any]
    params: Mapping[str, str]
    has_body: bool
    had_options: bool
    tracked: Tracked | None = None
    text_field: TextField | None = None

    @property
    def explains(self) -> bool:
        """Whether ES is asked to explain each hit (``explain`` in the body or the URL; an
        empty URL value is true, as ES reads it)."""
        return self.body.get("explain") is True or self.params.get("explain") in ("", "true")

    def skipped(self, reason: Reason, settings: IndexSettings, index: str) -> SearchPlan:
        """A plan that passes this search through, for ``reason``."""
        sent = self.body if self.has_body else None
        return SearchPlan(
            reason,
            sent,
            settings,
            index=index,
            rewrites_body=self.had_options,
            tracked=self.tracked,
        )


@dataclass
class _Forward:
    """What ES receives instead of the client's search."""

    body: dict[str, Any]
    drop: list[str] = field(default_factory=list)
    set_params: list[tuple[str, str]] = field(default_factory=list)
    source_filter: SourceFilter = field(default_factory=SourceFilter)
    filter_path: FilterPath | None = None

    def plan(
        self,
        body: dict[str, Any] | None,
        settings: IndexSettings,
        mode: ModeName,
        index: str,
        *,
        rewrites_body: bool,
    ) -> SearchPlan:
        """A plan to rerank, sending ES this."""
        return SearchPlan(
            skip_reason=None,
            body=body,
            settings=settings,
            mode=mode,
            drop_params=tuple(dict.fromkeys(self.drop)),
            set_params=tuple(self.set_params),
            index=index,
            source_filter=self.source_filter,
            filter_path=self.filter_path,
            rewrites_body=rewrites_body,
        )


def _continuation(search: _Search, config: RerankConfig) -> Reason | None:
    """Why the search's meaning depends on ES's own order or on a continuation."""
    body, params = search.body, search.params
    if "scroll" in params:
        return Reason.SCROLL
    if "pit" in body:
        # The next page continues from this page's last sort values: a reordered page would
        # repeat and lose hits.
        return Reason.PIT
    if "search_after" in body:
        return Reason.SEARCH_AFTER
    if "sort" in params or ("sort" in body and not _sort_is_score(body["sort"])):
        return Reason.SORT
    if "rescore" in body and config.rescore != "rerank":
        return Reason.RESCORE
    if _is_none_marker(body.get("stored_fields")) or params.get("stored_fields") == "_none_":
        # No _id, no _source: nothing to read or to tell the hits apart by.
        return Reason.STORED_FIELDS_NONE
    return None


def _min_score(search: _Search, settings: IndexSettings) -> Reason | None:
    """A client's ``min_score`` is on ES's scale (ES applies it before the sidecar sees a
    hit): only ``es_scores`` serves scores on that scale, every one of them a score ES gave
    a hit that passed it."""
    if "min_score" in search.body and settings.score.mode != "es_scores":
        return Reason.MIN_SCORE
    return None


def _type_ahead(search: _Search, options: RerankOptions, settings: IndexSettings) -> bool:
    """Whether the search is type-ahead (every text leaf prefix-style, or a completion
    suggester) that this index does not rerank; ``"rerank": {"enabled": true}`` asks for it
    anyway."""
    if settings.type_ahead == "rerank" or options.enabled is True:
        return False
    suggest = search.body.get("suggest")
    completion = isinstance(suggest, dict) and any(
        isinstance(s, dict) and "completion" in s for s in suggest.values()
    )
    return completion or read_query(search.body.get("query")).type_ahead


def _page(
    search: _Search, options: RerankOptions, limits: LimitsTuning, settings: IndexSettings
) -> tuple[int, int, str] | Reason:
    """(from, size, query text) of the client's search, or why it cannot be reranked."""
    size: Any = _int_param(search.params, "size")
    size = search.body.get("size", DEFAULT_SIZE) if size is None else size
    from_: Any = _int_param(search.params, "from")
    from_ = search.body.get("from", 0) if from_ is None else from_
    if (
        not isinstance(size, int)
        or not isinstance(from_, int)
        or isinstance(size, bool)
        or isinstance(from_, bool)
        or not 0 <= size <= _MAX_INT
        or not 0 <= from_ <= _MAX_INT
    ):
        # Not a page ES accepts (its from/size are 32-bit ints): ES gives its own answer.
        return Reason.UNPARSED_PAGING
    if size == 0:
        return Reason.SIZE_ZERO
    if _type_ahead(search, options, settings):
        return Reason.TYPE_AHEAD
    text_field = search.text_field or (lambda name: False)
    query = options.query or read_query(search.body.get("query"), text_field).text
    if not query and search.params.get("q"):
        query = lucene_free_text(search.params["q"], text_field=text_field) or None
    if not query:
        return Reason.NO_QUERY_TEXT
    # Query text read from the ES query is cut, not refused: ES accepts the search.
    return from_, size, query[: limits.max_query_chars]


def _window(
    window: int, limits: LimitsTuning, window_limit: int | None, from_: int, size: int
) -> int | Reason:
    """The window to rerank, or why the page cannot be reranked."""
    if window > limits.max_window:
        raise IllegalArgument(
            f"[rerank.window] {window} is larger than the configured maximum {limits.max_window}"
        )
    if window_limit is not None:
        if from_ + size > window_limit:
            # ES refuses the client's own page on this index: its answer, unchanged.
            return Reason.RESULT_WINDOW
        window = min(window, window_limit)
    return Reason.BEYOND_WINDOW if from_ >= window else window


def _implicit_source_off(search: _Search) -> bool:
    """Whether ES leaves ``_source`` out of the hits of a search that does not mention it:
    it does when ``stored_fields`` or ``script_fields`` are asked for (ES's
    ``FetchContext.buildFetchSourceContext``), unless ``stored_fields`` names ``_source``.
    ``docvalue_fields`` and ``fields`` leave it in."""
    body, params = search.body, search.params
    stored = body.get("stored_fields", params.get("stored_fields"))
    if stored is not None:
        names = stored.split(",") if isinstance(stored, str) else stored
        return not (isinstance(names, list) and "_source" in names)
    return bool(body.get("script_fields"))


def _forward(
    search: _Search, rules: IndexRules, options: RerankOptions, es_size: int
) -> _Forward | Reason:
    """The widened search ES receives (page, ``_source``, ``filter_path``), or why not."""
    params = search.params
    out = _Forward(copy.copy(search.body))
    paging = {"from": 0, "size": es_size}
    if search.has_body:
        out.body.update(paging)
        out.drop += [p for p in ("from", "size") if p in params]
    else:
        out.set_params += [(k, str(v)) for k, v in paging.items()]
    if params.get("filter_path"):
        out.filter_path = parse_filter_path(params["filter_path"])
        if not out.filter_path.wants_below(("hits", "hits")):
            return Reason.FILTER_PATH  # the client does not want hits: nothing to reorder
        out.drop.append("filter_path")
    body_filter = parse_source_spec(search.body["_source"]) if "_source" in search.body else None
    param_filter = parse_source_params(
        params.get("_source"), params.get("_source_includes"), params.get("_source_excludes")
    )
    client_filter = param_filter or body_filter
    if client_filter is None and "_source" in search.body:
        return Reason.UNPARSED_SOURCE_FILTER
    if client_filter is None and _implicit_source_off(search):
        client_filter = SourceFilter(enabled=False)
    needed = rules.source_fields(options.fields)
    if search.tracked is not None and search.tracked.object_id_field:
        needed += (search.tracked.object_id_field,)
    if client_filter is not None and hides_any(client_filter, needed):
        # Ask ES for the client's view plus the text fields; the hits get the client's
        # view back after reranking.
        out.source_filter = client_filter
        widened = client_filter.widened(needed)
        out.drop += [p for p in _SOURCE_PARAMS if p in params]
        if search.has_body:
            out.body["_source"] = widened.as_spec()
        else:
            out.set_params += widened.as_params()
    return out
