"""MsearchAnswer: an _msearch answer taken apart without decoding the items that are not
rewritten, and written back with those items byte for byte as ES sent them."""

from __future__ import annotations

import orjson

from sidecar.rerank.msearch_answer import MsearchAnswer

# What a Java serializer writes and orjson would write differently: exponents, a trailing
# zero, an integer past 64 bits, an escaped slash.
ITEM_A = (
    b'{"took":1,"hits":{"max_score":1.0E-5,"hits":[{"_id":"a\\/1","_score":2.50}]},'
    b'"n":123456789012345678901234567890,"status":200}'
)
ITEM_B = b'{"took":2,"hits":{"max_score":3.0,"hits":[{"_id":"b","_score":3.0}]},"status":200}'
ANSWER = b'{"took":3,"responses":[' + ITEM_A + b"," + ITEM_B + b"]}"


def test_untouched_items_keep_es_bytes() -> None:
    split = MsearchAnswer.split(ANSWER)
    assert split is not None
    assert split.join({}) == ANSWER
    item = split.item(1)
    item["hits"]["hits"][0]["_score"] = 9.5
    joined = split.join({1: orjson.dumps(item)})
    assert joined.startswith(b'{"took":3,"responses":[' + ITEM_A + b",")
    assert orjson.loads(joined)["responses"][1]["hits"]["hits"][0]["_score"] == 9.5


def test_whitespace_around_the_document_is_kept() -> None:
    split = MsearchAnswer.split(b"  " + ANSWER + b"\n")
    assert split is not None
    assert split.join({}) == b"  " + ANSWER + b"\n"


def test_what_it_cannot_take_apart_is_left_to_the_caller() -> None:
    pretty = b'{\n  "took" : 3,\n  "responses" : [ ]\n}\n'
    assert MsearchAnswer.split(pretty) is None, "a pretty answer is written again whole"
    assert MsearchAnswer.split(b'{"took":3}') is None
    assert MsearchAnswer.split(b'{"took":3,"responses":{}}') is None
    assert MsearchAnswer.split(b'{"took":3,"responses":[{"a":') is None
    assert MsearchAnswer.split(b"[1,2]") is None


def test_nesting_past_the_scanner_is_left_to_the_caller() -> None:
    deep = b'{"responses":[' + b"[" * 5000 + b"]" * 5000 + b"]}"
    assert MsearchAnswer.split(deep) is None
