"""Write a rewritten ES response back in the form ES wrote it.

ES writes JSON compact, or pretty (``?pretty``) with Jackson's ``DefaultPrettyPrinter`` as
ES configures it (``JsonXContentGenerator.usePrettyPrint``: objects and arrays indented by
two spaces, one entry a line, ``"key" : value``, ``{ }`` and ``[ ]`` when empty, and a line
feed at the end). The sidecar reads which one ES used from ES's own bytes, so a server that
ignores ``?pretty`` is answered compactly, as it answers directly.

:func:`render` never raises: a document it cannot write (nesting deeper than the
serializers go) is None, and the caller falls back to ES's own answer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson

log = logging.getLogger("sidecar.rerank")

_INDENT = "  "


def is_pretty(raw: bytes) -> bool:
    """Whether ES wrote ``raw`` pretty (its pretty printer starts every object on a line)."""
    head = raw.lstrip(b" ")[:2]
    return head in (b"{\n", b"[\n")


def compact(document: Any) -> bytes | None:
    try:
        return orjson.dumps(document)
    except (TypeError, orjson.JSONEncodeError):
        pass
    # orjson stops at 254 levels; the standard library goes as deep as the stack allows.
    try:
        return json.dumps(
            document, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (RecursionError, ValueError, TypeError):
        log.warning("a response could not be serialized again; ES's own answer is used")
        return None


def pretty(document: Any) -> bytes | None:
    out: list[str] = []
    try:
        _pretty(document, 0, out)
    except (RecursionError, ValueError, TypeError, orjson.JSONEncodeError):
        log.warning("a response could not be serialized again; ES's own answer is used")
        return None
    out.append("\n")
    return "".join(out).encode()


def render(document: Any, like: bytes) -> bytes | None:
    """``document`` written the way ES wrote ``like``."""
    if is_pretty(like):
        return pretty(document)
    return compact(document)


def _scalar(value: Any) -> str:
    return orjson.dumps(value).decode()


def _pretty(value: Any, level: int, out: list[str]) -> None:
    if isinstance(value, dict):
        if not value:
            out.append("{ }")
            return
        inner = _INDENT * (level + 1)
        out.append("{")
        first = True
        for key, child in value.items():
            out.append("\n" + inner if first else ",\n" + inner)
            first = False
            out.append(_scalar(str(key)))
            out.append(" : ")
            _pretty(child, level + 1, out)
        out.append("\n" + _INDENT * level + "}")
    elif isinstance(value, list):
        if not value:
            out.append("[ ]")
            return
        inner = _INDENT * (level + 1)
        out.append("[")
        for i, child in enumerate(value):
            out.append("\n" + inner if i == 0 else ",\n" + inner)
            _pretty(child, level + 1, out)
        out.append("\n" + _INDENT * level + "]")
    else:
        out.append(_scalar(value))
