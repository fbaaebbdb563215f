"""``index.max_result_window``, learned from ES's refusals.

Widening a page to the rerank window fails on an index whose ``max_result_window`` is
smaller: a single-index search gets 400 (``illegal_argument_exception``, "Result window is
too large, from + size must be less than or equal to: [N]"), a multi-index or wildcard
search a 200 with that index's shards in ``_shards.failures`` and its hits missing. The
sidecar then asks again with the client's own page (``skipped; reason=result_window``) and
remembers N for the index expression and for every index named in the failures, so later
searches there use a window that fits (or are passed through when the client's own page
does not fit either).

The memory is bounded (an LRU of ``MAX_ENTRIES`` names) and forgets after ``TTL_S``, so a
raised limit is picked up again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

MAX_ENTRIES = 4096
TTL_S = 600.0
_REFUSAL = "Result window is too large"
_LIMIT = re.compile(r"less than or equal to: \[(\d+)\]")


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


class ResultWindows:
    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        ttl_s: float = TTL_S,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits: TTLCache[str, int] = TTLCache(max_entries, ttl_s, timer=timer)

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
