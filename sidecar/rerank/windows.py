"""What the sidecar learns about an index from ES: its ``max_result_window``, from ES's
refusals, and which fields are text, from its mapping.

Widening a page to the rerank window fails on an index whose ``max_result_window`` is
smaller: a single-index search gets 400 (``illegal_argument_exception``, "Result window is
too large, from + size must be less than or equal to: [N]"), a multi-index or wildcard
search a 200 with that index's shards in ``_shards.failures`` and its hits missing. The
sidecar then asks again with the client's own page (``skipped; reason=result_window``) and
remembers N for the index expression and for every index named in the failures, so later
searches there use a window that fits (or are passed through when the client's own page
does not fit either).

Which fields are text decides what a ``query_string`` term scoped to a field is: words the
user typed (``title:(library card)``: the title box of an advanced search) or a filter
(``itype:BK``, ``year:[2000 TO 2010]``). A search that scopes terms to fields neither
``rerank.indices`` nor this memory knows asks ES once for those fields' mappings
(``GET /<index>/_mapping/field/<names>``, with the client's own credentials: it learns only
what the client may read), and the answer is remembered per index and field; a field ES
does not map, or a mapping the client may not read, counts as not text.

The memory is bounded (an LRU of ``MAX_ENTRIES`` names, and as many index and field pairs)
and forgets after ``TTL_S``, so a raised limit or a changed mapping is picked up again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any

from cachetools import TTLCache

MAX_ENTRIES = 4096
TTL_S = 600.0
_REFUSAL = "Result window is too large"
_LIMIT = re.compile(r"less than or equal to: \[(\d+)\]")
#: The mapping types whose values are analysed into words a user types.
TEXT_TYPES = frozenset({"text", "match_only_text", "search_as_you_type", "annotated_text"})


def _reasons(body: Any) -> list[tuple[str, str | None]]:
    """(reason text, index or None) for every failure in an ES error or shard report."""
    out: list[tuple[str, str | None]] = []
    if not isinstance(body, dict):
        return out
    error = body.get("error")
    if isinstance(error, dict):
        for key in ("reason",):
            if isinstance(error.get(key), str):
                out.append((error[key], None))
        for cause in (error.get("caused_by"), *(error.get("root_cause") or [])):
            if isinstance(cause, dict) and isinstance(cause.get("reason"), str):
                out.append((cause["reason"], None))
        failed = error.get("failed_shards")
        if isinstance(failed, list):
            out += _shard_reasons(failed)
    shards = body.get("_shards")
    if isinstance(shards, dict) and isinstance(shards.get("failures"), list):
        out += _shard_reasons(shards["failures"])
    return out


def _shard_reasons(failures: list[Any]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for failure in failures:
        if not isinstance(failure, dict):
            continue
        reason = failure.get("reason")
        text = reason.get("reason") if isinstance(reason, dict) else reason
        index = failure.get("index")
        if isinstance(text, str):
            out.append((text, index if isinstance(index, str) else None))
    return out


def refusal(body: Any) -> tuple[int | None, list[str]] | None:
    """When ``body`` (an ES answer or one ``_msearch`` item) reports a result window too
    large: the limit ES named (None if it named none) and the indices it named."""
    found = [(text, index) for text, index in _reasons(body) if _REFUSAL in text]
    if not found:
        return None
    limits = [int(m.group(1)) for text, _ in found if (m := _LIMIT.search(text))]
    indices = sorted({index for _, index in found if index})
    return (min(limits) if limits else None), indices


def mapped_text(body: Any, names: Iterable[str]) -> dict[str, bool]:
    """For each of ``names`` (a ``*`` pattern allowed, as ES takes them), whether a
    ``_mapping/field`` answer maps it, in any index, to a text type."""
    found: dict[str, bool] = {}
    indices = body.values() if isinstance(body, dict) else ()
    for entry in indices:
        mappings = entry.get("mappings") if isinstance(entry, dict) else None
        for full_name, field in (mappings or {}).items() if isinstance(mappings, dict) else ():
            mapping = field.get("mapping") if isinstance(field, dict) else None
            types = (
                [m.get("type") for m in mapping.values() if isinstance(m, dict)]
                if (isinstance(mapping, dict))
                else []
            )
            found[full_name] = found.get(full_name, False) or any(t in TEXT_TYPES for t in types)
    return {
        name: any(text for full, text in found.items() if fnmatchcase(full, name)) for name in names
    }


class IndexFacts:
    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        ttl_s: float = TTL_S,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits: TTLCache[str, int] = TTLCache(max_entries, ttl_s, timer=timer)
        self._text: TTLCache[tuple[str, str], bool] = TTLCache(max_entries, ttl_s, timer=timer)

    def is_text(self, index: str, field: str) -> bool | None:
        """Whether ``field`` is text in ``index`` (None: not known)."""
        return self._text.get((index, field))

    def learn_fields(self, index: str, known: dict[str, bool]) -> None:
        """Remember which of the fields of a search on ``index`` are text."""
        for field, text in known.items():
            self._text[(index, field)] = text

    def limit(self, index: str) -> int | None:
        """The smallest learned limit for the expression or any of its parts."""
        names = [index, *index.split(",")] if "," in index else [index]
        known = [self._limits[n] for n in names if n in self._limits]
        return min(known) if known else None

    def learn(self, index: str, body: Any, asked: int) -> bool:
        """Record a refusal in ``body`` of a search on ``index`` that asked for ``asked``
        hits (from + size); whether there was one."""
        found = refusal(body)
        if found is None:
            return False
        limit, indices = found
        if limit is None:
            # Refused without a number: all that is known is that ``asked`` is too many.
            limit = max(asked - 1, 0)
        for name in {index, *indices}:
            current = self._limits.get(name)
            self._limits[name] = limit if current is None else min(current, limit)
        return True
