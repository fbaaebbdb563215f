"""Shared helpers for tests that search through the sidecar."""

from __future__ import annotations

from typing import Any

from sidecar.config import merge

BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SAMPLE = "sample-rerank"
#: Tests that assert a rerank was applied give the real model all the time it needs, even on
#: a busy machine. Tests of the timeout fallback set a small budget and control the fault.
GENEROUS_BUDGET_MS = 120_000


def base_config(es_url: str, **over: Any) -> dict[str, Any]:
    return merge(
        {
            "es": {"url": es_url, "timeouts": {"connect_s": 1.0, "read_s": 10.0}},
            "model": {"name": BUNDLED_MODEL},
            "rerank": {"window": 20, "budget_ms": GENEROUS_BUDGET_MS},
        },
        over,
    )


def multi_match(query: str, **extra: Any) -> dict[str, Any]:
    return {
        "query": {"multi_match": {"query": query, "fields": ["title^2", "body", "subjects"]}},
        **extra,
    }
