"""Shared helpers for tests that search through the sidecar."""

from __future__ import annotations

from typing import Any

from sidecar.config import merge

BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SAMPLE = "sample-rerank"
#: Tests that assert a rerank was applied give the real model all the time it needs, even on
#: a busy machine. Tests of the timeout fallback set a small budget and control the fault.
GENEROUS_BUDGET_MS = 120_000
#: What a pass of a local model costs beyond its own tokens, pinned instead of measured at
#: start-up: timing passes of up to 2,048 tokens takes the bundled model seconds on a busy
#: CPU, at every start of a test's sidecar. Measured where it is the subject
#: (tests/models/test_worker.py, tests/models/test_units.py, tests/rerank/test_capacity.py)
#: and by the sidecar processes the tests start with the bundled model (their configs are
#: their own).
PINNED_PASS_OVERHEAD_TOKENS = 32


def base_config(es_url: str, **over: Any) -> dict[str, Any]:
    """A test sidecar's settings (``over`` merged in): the bundled model, a window of 20, a
    generous budget and a pinned pass cost (``tuning.worker.pass_overhead_tokens: null``
    measures it as the product does)."""
    return merge(
        {
            "es": {"url": es_url, "timeouts": {"connect_s": 1.0, "read_s": 10.0}},
            "model": {"name": BUNDLED_MODEL},
            "rerank": {"window": 20, "budget_ms": GENEROUS_BUDGET_MS},
            "tuning": {"worker": {"pass_overhead_tokens": PINNED_PASS_OVERHEAD_TOKENS}},
        },
        over,
    )


def multi_match(query: str, **extra: Any) -> dict[str, Any]:
    return {
        "query": {"multi_match": {"query": query, "fields": ["title^2", "body", "subjects"]}},
        **extra,
    }
