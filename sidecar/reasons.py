"""Why a search keeps ES's order: the one vocabulary of the ``X-Rerank`` header, the
metrics (a bounded label set), the logs and the README's table (a test checks it)."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a search was not reranked (``skipped``: by design; ``fallback``: the model could
    not help in time)."""

    # --- the request: not a search the sidecar can reorder -----------------------------
    ROLLOUT_OFF = "rollout_off"
    DISABLED_BY_REQUEST = "disabled_by_request"
    NO_QUERY_TEXT = "no_query_text"
    TYPE_AHEAD = "type_ahead"
    SORT = "sort"
    SCROLL = "scroll"
    SEARCH_AFTER = "search_after"
    PIT = "pit"
    RESCORE = "rescore"
    MIN_SCORE = "min_score"
    SIZE_ZERO = "size_zero"
    BEYOND_WINDOW = "beyond_window"
    RESULT_WINDOW = "result_window"
    STORED_FIELDS_NONE = "stored_fields_none"
    FILTER_PATH = "filter_path"
    FORMAT = "format"
    DUPLICATE_KEYS = "duplicate_keys"
    UNPARSED_BODY = "unparsed_body"
    UNPARSED_PAGING = "unparsed_paging"
    UNPARSED_SOURCE_FILTER = "unparsed_source_filter"
    ENCODED_BODY = "encoded_body"
    NO_BODY = "no_body"
    UNSERIALIZABLE_BODY = "unserializable_body"
    MSEARCH_LIMIT = "msearch_limit"
    NO_SEARCHES = "no_searches"
    # --- ES's answer ----------------------------------------------------------------------
    ES_ERROR = "es_error"
    NO_HITS = "no_hits"
    NO_DOCUMENT_TEXT = "no_document_text"
    UNEXPECTED_RESPONSE = "unexpected_response"
    UNSERIALIZABLE_RESPONSE = "unserializable_response"
    REWRITE_FAILED = "rewrite_failed"
    MEMORY = "memory"
    # --- the query and the model ------------------------------------------------------------
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    QUERY_TOO_LONG = "query_too_long"
    MODEL_NOT_READY = "model_not_ready"
    CPU_SHARE = "cpu_share"
    PAGE_ORDER = "page_order"
    # --- fallback: the model could not help in time ---------------------------------------
    BUDGET = "budget"
    TIMEOUT = "timeout"
    OVERLOADED = "overloaded"
    BREAKER_OPEN = "breaker_open"
    ERROR = "error"


#: Reasons that are the model's trouble (``fallback``); every other one is ``skipped``.
FALLBACK = frozenset(
    {Reason.BUDGET, Reason.TIMEOUT, Reason.OVERLOADED, Reason.BREAKER_OPEN, Reason.ERROR}
)


#: What each reason means, in the words of the README's table (generated from this).
MEANING: dict[Reason, str] = {
    Reason.ROLLOUT_OFF: "rollout put this client or index in mode `off`",
    Reason.DISABLED_BY_REQUEST: 'the request said `"rerank": {"enabled": false}`',
    Reason.NO_QUERY_TEXT: "no words to rerank by in the query (filters, `match_all`...)",
    Reason.TYPE_AHEAD: "type-ahead: every scoring clause prefix-style, or a completion suggester "
    "(`rerank.type_ahead`)",
    Reason.SORT: "a `sort` other than `_score`",
    Reason.SCROLL: "a scroll: the next page continues ES's order",
    Reason.SEARCH_AFTER: "`search_after`: the next page continues from this page's sort values",
    Reason.PIT: "a point in time: the next page continues from this page's sort values",
    Reason.RESCORE: "the client's own `rescore` (`rerank.rescore: rerank` reranks it anyway)",
    Reason.MIN_SCORE: "the client's `min_score` is on ES's scale: reranked only with "
    "`score_mode: es_scores` (docs/scores.md)",
    Reason.SIZE_ZERO: "`size: 0`: no hits to reorder",
    Reason.BEYOND_WINDOW: "the page starts past the window: ES's order, as on every page",
    Reason.RESULT_WINDOW: "the index's `max_result_window` refuses the widened page",
    Reason.STORED_FIELDS_NONE: "`stored_fields: _none_`: nothing to read or tell hits apart by",
    Reason.FILTER_PATH: "the client's `filter_path` keeps no hit",
    Reason.FORMAT: "an answer format other than JSON (`?format=yaml|cbor|smile`)",
    Reason.DUPLICATE_KEYS: "a body with a repeated key: ES refuses it, and gets the client's bytes",
    Reason.UNPARSED_BODY: "a body that is not JSON (or not an object): ES answers it",
    Reason.UNPARSED_PAGING: "`from`/`size` that ES does not accept: ES answers it",
    Reason.UNPARSED_SOURCE_FILTER: "a `_source` filter the sidecar cannot read: ES answers it",
    Reason.ENCODED_BODY: "a body in a content encoding the sidecar does not read",
    Reason.NO_BODY: "an `_msearch` without a body",
    Reason.UNSERIALIZABLE_BODY: "a body nested deeper than the sidecar writes again",
    Reason.MSEARCH_LIMIT: "an `_msearch` sub-search past `rerank.msearch_max_reranked`",
    Reason.NO_SEARCHES: "an `_msearch` with no searches",
    Reason.ES_ERROR: "ES answered with an error: its answer, untouched",
    Reason.NO_HITS: "ES found nothing",
    Reason.NO_DOCUMENT_TEXT: "the hits have none of the text fields the model reads",
    Reason.UNEXPECTED_RESPONSE: "ES's answer is not JSON or has no hits: asked again, relayed",
    Reason.UNSERIALIZABLE_RESPONSE: "ES's answer is nested deeper than the sidecar writes again",
    Reason.REWRITE_FAILED: "rewriting ES's answer failed (a bug, logged): ES's own answer",
    Reason.MEMORY: "ES's answer is too large to hold (`tuning.es.*`): streamed instead",
    Reason.UNSUPPORTED_LANGUAGE: "the query is in a language the model does not read",
    Reason.QUERY_TOO_LONG: "the query and instruction alone exceed `model.max_length`",
    Reason.MODEL_NOT_READY: "the model is loading, failed to load, or was refused",
    Reason.CPU_SHARE: "this client used more than its share of the sidecar's CPU (busy loop)",
    Reason.PAGE_ORDER: "a later page of a search whose first page was in ES order: it continues it",
    Reason.BUDGET: "less than `rerank.min_window` hits fit the budget: answered in ES's time",
    Reason.TIMEOUT: "the budget ran out before `rerank.min_window` hits were scored",
    Reason.OVERLOADED: "this client (or request) has all the model's queue it may have",
    Reason.BREAKER_OPEN: "the circuit breaker is open after model faults",
    Reason.ERROR: "the model failed (error, unusable scores): logged and counted",
}
