"""parse_ndjson: the _msearch body as header/body pairs, or None for anything else."""

from __future__ import annotations

import pytest

from sidecar.http.body import parse_ndjson


def test_pairs_in_order_blank_lines_ignored() -> None:
    data = b'{"index":"a"}\n{"query":{"match_all":{}}}\n\n{}\n{"size":0}\n'
    assert parse_ndjson(data) == [
        ({"index": "a"}, {"query": {"match_all": {}}}),
        ({}, {"size": 0}),
    ]


def test_no_trailing_newline_and_crlf() -> None:
    assert parse_ndjson(b'{}\r\n{"size":1}') == [({}, {"size": 1})]


@pytest.mark.parametrize(
    "data",
    [
        b'{"index":"a"}\n',  # a header without its body
        b'{}\n{"query":\n',  # a body cut in the middle
        b"{}\nnot json\n",
    ],
)
def test_malformed_payloads_are_none(data: bytes) -> None:
    assert parse_ndjson(data) is None


def test_empty_payload_has_no_pairs() -> None:
    assert parse_ndjson(b"\n\n") == []
