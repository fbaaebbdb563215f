from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from es_integration.corpus import load_sample, sample_queries_path
from tests.conftest import BUNDLED_MODEL, ESTarget
from tests.support.apps import RunningSidecar, merge, running_sidecar
from tests.support.fake_reranker import FakeReranker

SAMPLE = "sample-rerank"


@pytest.fixture(scope="session")
def sample_index(es: ESTarget) -> str:
    load_sample(Elasticsearch(es.url, request_timeout=60), SAMPLE)
    return SAMPLE


@pytest.fixture(scope="session")
def demo_queries() -> list[dict[str, Any]]:
    lines = sample_queries_path().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def base_config(es_url: str, **over: Any) -> dict[str, Any]:
    return merge(
        {
            "es": {"url": es_url, "timeouts": {"connect_s": 1.0, "read_s": 10.0}},
            "model": {"name": BUNDLED_MODEL},
            "rerank": {"window": 20, "budget_ms": 5000},
        },
        over,
    )


@pytest.fixture(scope="session")
async def bundled(es: ESTarget, sample_index: str) -> AsyncIterator[RunningSidecar]:
    """An in-process sidecar with the bundled MiniLM in front of the session's ES."""
    async with running_sidecar(base_config(es.url)) as sc:
        yield sc


@pytest.fixture
async def fake_reranker() -> AsyncIterator[FakeReranker]:
    fake = await FakeReranker().start()
    yield fake
    await fake.close()


def multi_match(query: str, **extra: Any) -> dict[str, Any]:
    return {
        "query": {"multi_match": {"query": query, "fields": ["title^2", "body", "subjects"]}},
        **extra,
    }
