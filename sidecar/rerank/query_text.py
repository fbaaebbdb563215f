"""Find the user's query text inside an Elasticsearch query DSL body.

Only full-text leaves carry text a user typed: ``match``, ``match_phrase``,
``match_phrase_prefix``, ``match_bool_prefix``, ``multi_match``, ``query_string``,
``simple_query_string``, ``combined_fields``. Compound queries are walked: ``bool``
(``must``, ``should``, ``filter``; never ``must_not``, whose text is what the user does *not*
want), ``function_score``, ``dis_max``, ``constant_score``, ``boosting.positive``,
``nested``. Distinct texts are joined with a space in document order.

The function never raises: any shape it does not understand yields no text, which means
"do not rerank" rather than an error.
"""

from __future__ import annotations

from typing import Any

_LEAF_KEYS = {
    "match": "query",
    "match_phrase": "query",
    "match_phrase_prefix": "query",
    "match_bool_prefix": "query",
}
_DIRECT = ("multi_match", "query_string", "simple_query_string", "combined_fields")
_MAX_DEPTH = 64


def extract_query_text(query: Any) -> str | None:
    texts: list[str] = []
    _walk(query, texts, 0)
    unique = dict.fromkeys(texts)  # de-duplicated, first occurrence order
    joined = " ".join(unique).strip()
    return joined or None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _walk(node: Any, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH or not isinstance(node, dict):
        return
    for kind, body in node.items():
        if kind in _LEAF_KEYS and isinstance(body, dict):
            for field_body in body.values():
                if isinstance(field_body, dict):
                    text = _text(field_body.get(_LEAF_KEYS[kind]))
                else:
                    text = _text(field_body)
                if text:
                    out.append(text)
        elif kind in _DIRECT and isinstance(body, dict):
            text = _text(body.get("query"))
            if text:
                out.append(text)
        elif kind == "bool" and isinstance(body, dict):
            for clause in ("must", "should", "filter"):
                _walk_many(body.get(clause), out, depth)
        elif kind in ("function_score", "constant_score", "nested") and isinstance(body, dict):
            _walk(body.get("query") or body.get("filter"), out, depth + 1)
        elif kind == "dis_max" and isinstance(body, dict):
            _walk_many(body.get("queries"), out, depth)
        elif kind == "boosting" and isinstance(body, dict):
            _walk(body.get("positive"), out, depth + 1)


def _walk_many(value: Any, out: list[str], depth: int) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, out, depth + 1)
    else:
        _walk(value, out, depth + 1)
