"""Reading the two UBI indices for the report: every replica's log, in pages.

Queries are read sorted by ``query_id`` (then page), so the pages of one query arrive
together and are folded one query at a time: memory holds the clicks of the period and one
query, never the whole log. Clicks are the ``click`` events from the period's start to a
day after its end, by ``query_id``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from sidecar.errors import IllegalArgument, UpstreamError
from sidecar.jsonutil import dumps, loads
from sidecar.ubi.report import Click, Served, click_of
from sidecar.ubi.schema import parse_timestamp, utc

#: Documents read per request.
PAGE = 1000
#: How long after a period's end its queries' clicks are still read.
CLICK_GRACE = timedelta(days=1)
#: ES date math the period may use besides ISO-8601 date-times: ``now``, ``now-7d``...
_DATE_MATH = re.compile(r"now(?:[+-]\d{1,6}[smhdwMy])*(?:/[smhdwMy])?")

Send = Callable[[str, str, bytes | None, str], Awaitable[tuple[int, bytes]]]


class ReadError(UpstreamError):
    """An index could not be read: ES answered an error (the report answers 502)."""

    status = 502
    error_type = "ubi_read_exception"


def period(since: str | None, until: str | None) -> dict[str, str]:
    """The ``range`` of a report's period; IllegalArgument for a bound that is neither an
    ISO-8601 date-time with an offset nor ES date math (``now-7d``)."""
    bounds: dict[str, str] = {}
    for key, value, op in (("since", since, "gte"), ("until", until, "lt")):
        if value is None or value == "":
            continue
        if parse_timestamp(value) is None and not _DATE_MATH.fullmatch(value):
            raise IllegalArgument(
                f"[{key}] must be an ISO-8601 date-time with an offset, or date math like now-7d"
            )
        bounds[op] = value
    return bounds


async def _search(send: Send, index: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    status, raw = await send("POST", f"/{index}/_search", dumps(body), "application/json")
    if status == 404:
        return []  # nothing logged yet
    if status != 200:
        raise ReadError(f"reading {index} answered {status}")
    answer = loads(raw)
    hits: list[dict[str, Any]] = answer.get("hits", {}).get("hits", [])
    return hits


async def _all(
    send: Send, index: str, query: dict[str, Any], sort: list[Any], fields: list[str]
) -> AsyncIterator[dict[str, Any]]:
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {"size": PAGE, "query": query, "sort": sort, "_source": fields}
        if after is not None:
            body["search_after"] = after
        hits = await _search(send, index, body)
        for hit in hits:
            yield hit.get("_source") or {}
        if len(hits) < PAGE:
            return
        after = hits[-1].get("sort")


def click_period(bounds: Mapping[str, str]) -> dict[str, str]:
    """The clicks a period's queries may have: from its start to a day after its end (a
    query served just before the end is clicked after it, and a browser's clock may be
    late)."""
    out = dict(bounds)
    until = bounds.get("lt")
    if until is not None:
        at = parse_timestamp(until)
        out["lt"] = utc(at + CLICK_GRACE) if at is not None else f"{until}+1d"
    return out


async def clicks(send: Send, index: str, bounds: Mapping[str, str]) -> dict[str, list[Click]]:
    """The clicks of the period's queries (:func:`click_period`), by ``query_id``."""
    query: dict[str, Any] = {
        "bool": {"filter": [{"term": {"action_name": "click"}}]},
    }
    if bounds:
        query["bool"]["filter"].append({"range": {"timestamp": click_period(bounds)}})
    out: dict[str, list[Click]] = defaultdict(list)
    fields = ["action_name", "query_id", "timestamp", "event_attributes.object.object_id"]
    sort = [{"query_id": "asc"}, {"timestamp": "asc"}, {"_doc": "asc"}]
    async for event in _all(send, index, query, sort, fields):
        click = click_of(event)
        if click is not None:
            out[str(event.get("query_id", ""))].append(click)
    return out


async def queries(send: Send, index: str, bounds: Mapping[str, str]) -> AsyncIterator[Served]:
    """The period's queries, each with all its pages folded, one at a time."""
    query: dict[str, Any] = {"range": {"timestamp": dict(bounds)}} if bounds else {"match_all": {}}
    # A query's pages in the order served: a page served twice counts as first served.
    sort = [{"query_id": "asc"}, {"timestamp": "asc"}, {"query_response_id": "asc"}]
    fields = ["query_id", "query_response_hit_ids", "query_attributes"]
    current: Served | None = None
    async for doc in _all(send, index, query, sort, fields):
        query_id = str(doc.get("query_id", ""))
        if current is None or current.query_id != query_id:
            if current is not None:
                yield current
            attributes = doc.get("query_attributes") or {}
            current = Served(query_id, str(attributes.get("rerank_mode", "on")))
        current.add_page(doc)
    if current is not None:
        yield current
