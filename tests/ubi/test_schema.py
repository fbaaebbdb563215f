"""UBI events as clients send them: validated whole, normalized, or refused naming the first
bad field and the event's index."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.ubi.schema import EventError, events_of, validate

CLICK: dict[str, Any] = {
    "action_name": "click",
    "query_id": "q-1",
    "client_id": "c-1",
    "timestamp": "2026-12-01T10:11:12.345+01:00",
    "message_type": "INFO",
    "message": "clicked",
    "event_attributes": {
        "object": {"object_id": "cat-0011", "object_id_field": "_id"},
        "position": {"ordinal": 3},
    },
}


def test_a_valid_click_is_stored_in_utc_and_keeps_its_fields() -> None:
    event = validate(0, CLICK).document
    assert event["timestamp"] == "2026-12-01T09:11:12.345Z"
    assert event["event_attributes"]["position"] == {"ordinal": 3}
    assert event["event_attributes"]["object"]["object_id"] == "cat-0011"
    assert event["client_id"] == "c-1"


def test_schema_1_0_positions_and_integer_ids_are_read() -> None:
    old = {
        **CLICK,
        "event_attributes": {"object": {"object_id": 17}, "position": {"ordinal": {"index": 2}}},
    }
    event = validate(0, old).document
    assert event["event_attributes"]["position"]["ordinal"] == 2
    assert event["event_attributes"]["object"]["object_id"] == "17"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action_name": None}, "action_name"),
        ({"action_name": ""}, "action_name"),
        ({"action_name": "x" * 101}, "action_name"),
        ({"query_id": 5}, "query_id"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2026-12-01T10:11:12"}, "timestamp"),  # no offset
        ({"timestamp": 1764583872}, "timestamp"),
        ({"client_id": ["a"]}, "client_id"),
        ({"message": "m" * 1025}, "message"),
        ({"event_attributes": []}, "event_attributes"),
        ({"event_attributes": {"position": {"ordinal": -1}}}, "event_attributes.position.ordinal"),
        ({"event_attributes": {"position": {"ordinal": "3"}}}, "event_attributes.position.ordinal"),
        (
            {"event_attributes": {"object": {"object_id": True}}},
            "event_attributes.object.object_id",
        ),
        ({"event_attributes": {"object": "x"}}, "event_attributes.object"),
    ],
)
def test_a_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    event = {k: v for k, v in {**CLICK, **change}.items() if v is not None}
    with pytest.raises(EventError) as info:
        validate(4, event)
    assert info.value.index == 4 and info.value.field == field


def test_bodies_are_one_event_an_array_or_ndjson() -> None:
    one = b'{"action_name": "click"}'
    assert events_of(one, "application/json") == [{"action_name": "click"}]
    assert len(events_of(b"[" + one + b"," + one + b"]", "application/json")) == 2
    assert len(events_of(one + b"\n" + one + b"\n", "application/x-ndjson")) == 2
    assert len(events_of(one + b"\n" + one, "application/json")) == 2, "ndjson by its shape"
    pretty = b'{\n  "action_name": "click"\n}'
    assert events_of(pretty, "application/json") == [{"action_name": "click"}]
    with pytest.raises(EventError, match="not JSON"):
        events_of(b"{nope", "application/json")
    with pytest.raises(EventError) as info:
        events_of(one + b"\n{nope\n", "application/x-ndjson")
    assert info.value.index == 1
