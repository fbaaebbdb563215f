"""The UBI documents: events as clients send them (validated whole), and the two indices'
mappings.

The interface is the User Behavior Insights specification (github.com/o19s/ubi, schema
1.0.0, with the fields later versions added that the OpenSearch plugin's mappings hold):

* an event (``ubi_events``) needs ``action_name``, ``query_id`` and ``timestamp`` (an
  ISO-8601 date-time with an offset: ``Z`` or ``+01:00``); ``client_id``, ``application``,
  ``session_id``, ``user_id``, ``message_type``, ``message`` and ``event_attributes`` (with
  ``object.object_id`` / ``object_id_field`` and ``position``) are optional. The position's
  ordinal is stored as an integer (``{"ordinal": 3}``, as schema 1.3 and the plugin's
  mapping have it); schema 1.0's ``{"ordinal": {"index": 3}}`` is read too. Timestamps are
  stored in UTC, in the ``strict_date_time`` form both Elasticsearch and OpenSearch index.
* a query (``ubi_queries``) is written by the sidecar (:mod:`sidecar.ubi.log`).

Any other field of an event is kept in its document but not indexed (the mapping is not
dynamic), so a client cannot grow the index's mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sidecar.jsonutil import loads

#: Longest strings, as the specification bounds them.
SHORT = 100
OBJECT_ID = 256
MESSAGE = 1024


class EventError(ValueError):
    """An event that cannot be stored: which one (its index in the request) and which field."""

    def __init__(self, index: int, field: str, reason: str) -> None:
        super().__init__(f"event [{index}]: [{field}] {reason}")
        self.index = index
        self.field = field


#: ES's ``integer``: values the mapping takes are below this (and above its negative).
INT = 2**31


def utc(value: datetime) -> str:
    """``value`` as ``strict_date_time`` in UTC, to the millisecond."""
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO-8601 date-time with an offset, or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def events_of(raw: bytes, content_type: str) -> list[Any]:
    """The events of a request body: one JSON object, a JSON array of them, or ndjson (one
    per line). Raises EventError for a body that is none of them."""
    text = raw.strip()
    if not text:
        raise EventError(0, "body", "is empty")
    if "ndjson" in content_type or (text[:1] == b"{" and b"\n" in text and not _one(text)):
        lines = [line for line in text.split(b"\n") if line.strip()]
        return [_line(i, line) for i, line in enumerate(lines)]
    try:
        payload = loads(text)
    except ValueError:
        raise EventError(0, "body", "is not JSON") from None
    return payload if isinstance(payload, list) else [payload]


def _one(text: bytes) -> bool:
    try:
        loads(text)
    except ValueError:
        return False
    return True


def _line(index: int, line: bytes) -> Any:
    try:
        return loads(line)
    except ValueError:
        raise EventError(index, "body", "is not JSON (one event per line)") from None


def _string(index: int, event: dict[str, Any], key: str, limit: int, required: bool) -> None:
    value = event.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise EventError(
            index, key, "must be a non-empty string" if required else "must be a string"
        )
    if len(value) > limit:
        raise EventError(index, key, f"is longer than {limit} characters")


@dataclass(frozen=True)
class Event:
    """A validated event, as it is stored."""

    document: dict[str, Any]

    @property
    def query_id(self) -> str:
        return str(self.document["query_id"])


def validate(index: int, event: Any) -> Event:
    """``event`` checked and normalized, or EventError naming the first bad field."""
    if not isinstance(event, dict):
        raise EventError(index, "event", "must be a JSON object")
    _string(index, event, "action_name", SHORT, True)
    _string(index, event, "query_id", SHORT, True)
    for key in ("client_id", "application", "session_id", "user_id", "message_type"):
        _string(index, event, key, SHORT, False)
    _string(index, event, "message", MESSAGE, False)
    if "user_query" in event and not isinstance(event["user_query"], str):
        raise EventError(index, "user_query", "must be a string")
    when = parse_timestamp(event.get("timestamp"))
    if when is None:
        raise EventError(
            index, "timestamp", "must be an ISO-8601 date-time with an offset (Z or +01:00)"
        )
    document = {**event, "timestamp": utc(when)}
    attributes = event.get("event_attributes")
    if attributes is not None:
        document["event_attributes"] = _attributes(index, attributes)
    return Event(document)


def _attributes(index: int, attributes: Any) -> dict[str, Any]:
    if not isinstance(attributes, dict):
        raise EventError(index, "event_attributes", "must be an object")
    out = dict(attributes)
    obj = attributes.get("object")
    if obj is not None:
        out["object"] = _object(index, obj)
    position = attributes.get("position")
    if position is not None:
        out["position"] = _position(index, position)
    return out


#: ``event_attributes.object``'s mapped fields: the types the mapping takes, and how long.
#: A value the mapping refuses would be accepted here and lost when ES refuses the document.
_OBJECT_FIELDS: dict[str, tuple[tuple[type, ...], int | None, str]] = {
    "object_id": ((str, int), OBJECT_ID, "a string or an integer"),
    "internal_id": ((str, int), None, "a string or an integer"),
    "object_id_field": ((str,), SHORT, "a string"),
    "name": ((str,), None, "a string"),
    "description": ((str,), None, "a string"),
}


def _object(index: int, obj: Any) -> dict[str, Any]:
    where = "event_attributes.object"
    if not isinstance(obj, dict):
        raise EventError(index, where, "must be an object")
    out = dict(obj)
    for key, (kinds, limit, kind_name) in _OBJECT_FIELDS.items():
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise EventError(index, f"{where}.{key}", f"must be {kind_name}")
        if limit is not None and len(str(value)) > limit:
            raise EventError(index, f"{where}.{key}", f"is longer than {limit}")
    if obj.get("object_id") is not None:
        out["object_id"] = str(obj["object_id"])  # keyword: one spelling for matching
    return out


def _position(index: int, position: Any) -> dict[str, Any]:
    where = "event_attributes.position"
    if not isinstance(position, dict):
        raise EventError(index, where, "must be an object")
    out = dict(position)
    ordinal = position.get("ordinal")
    if isinstance(ordinal, dict) and set(ordinal) == {"index"}:
        ordinal = ordinal["index"]  # schema 1.0.0's shape
    if ordinal is not None:
        if isinstance(ordinal, bool) or not isinstance(ordinal, int) or not 0 <= ordinal < INT:
            raise EventError(index, f"{where}.ordinal", "must be an integer, 0 or more")
        out["ordinal"] = ordinal
    for key in ("x", "y", "page_depth", "scroll_depth"):
        value = position.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not -INT < value < INT
        ):
            raise EventError(index, f"{where}.{key}", "must be a number (an ES integer)")
    return out


#: ``ubi_queries``: the plugin's mapping (flattened for OpenSearch's flat_object), not dynamic.
QUERIES_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "timestamp": {"type": "date", "format": "strict_date_time"},
        "query_id": {"type": "keyword", "ignore_above": SHORT},
        "query_response_id": {"type": "keyword", "ignore_above": SHORT},
        "query_response_hit_ids": {"type": "keyword"},
        "user_query": {"type": "keyword"},
        "query_attributes": {"type": "flattened"},
        "client_id": {"type": "keyword", "ignore_above": SHORT},
        "application": {"type": "keyword", "ignore_above": SHORT},
        "object_id_field": {"type": "keyword", "ignore_above": SHORT},
    },
}

#: ``ubi_events``: the plugin's mapping, not dynamic at the top (see the module's doc).
EVENTS_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "application": {"type": "keyword", "ignore_above": 256},
        "action_name": {"type": "keyword", "ignore_above": SHORT},
        "client_id": {"type": "keyword", "ignore_above": SHORT},
        "query_id": {"type": "keyword", "ignore_above": SHORT},
        "session_id": {"type": "keyword", "ignore_above": SHORT},
        "user_id": {"type": "keyword", "ignore_above": SHORT},
        "message": {"type": "keyword", "ignore_above": MESSAGE},
        "message_type": {"type": "keyword", "ignore_above": SHORT},
        "user_query": {"type": "keyword"},
        "timestamp": {"type": "date", "format": "strict_date_time"},
        "event_attributes": {
            "dynamic": False,
            "properties": {
                "position": {
                    "properties": {
                        "ordinal": {"type": "integer"},
                        "x": {"type": "integer"},
                        "y": {"type": "integer"},
                        "page_depth": {"type": "integer"},
                        "scroll_depth": {"type": "integer"},
                    }
                },
                "object": {
                    "properties": {
                        "internal_id": {"type": "keyword"},
                        "object_id": {"type": "keyword", "ignore_above": OBJECT_ID},
                        "object_id_field": {"type": "keyword", "ignore_above": SHORT},
                        "name": {"type": "keyword", "ignore_above": 256},
                        "description": {"type": "text"},
                    }
                },
            },
        },
    },
}
