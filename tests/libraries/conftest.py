"""Real client libraries, each run directly against ES and through a sidecar.

One sidecar for the session, in front of the session's ES, with the bundled MiniLM (a real
model: the scores are a model's), a window of ``WINDOW`` (so that pages cross its edge) and
the default settings otherwise: annotations off, ``score_mode: replace``, type-ahead not
reranked. Indices named ``*-es-scores`` are served with ``score_mode: es_scores``, as a user
who keeps BM25-tuned thresholds would configure them (docs/scores.md).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import pytest

from tests.conftest import ESTarget
from tests.libraries.corpus import WINDOW, plain_docs, plain_mapping
from tests.support.apps import RunningSidecar, running_sidecar
from tests.support.search import base_config

#: The frontends' index (Search UI, Searchkit, elasticsearch.dsl).
PLAIN = "lib-articles"


def is_non_increasing(values: Iterable[float]) -> bool:
    items = list(values)
    return all(a >= b for a, b in itertools.pairwise(items))


async def bulk_load(
    url: str, index: str, mapping: dict[str, Any], docs: list[dict[str, Any]]
) -> None:
    """``docs`` written to ``index`` in ES itself (``id`` is each one's ``_id``)."""
    async with aiohttp.ClientSession() as s:
        async with s.delete(f"{url}/{index}") as r:
            await r.read()
        async with s.put(f"{url}/{index}", json={"mappings": mapping}) as r:
            assert r.status == 200, await r.text()
        lines = []
        for doc in docs:
            lines += [json.dumps({"index": {"_index": index, "_id": doc["id"]}}), json.dumps(doc)]
        data = ("\n".join(lines) + "\n").encode()
        headers = {"Content-Type": "application/x-ndjson"}
        async with s.post(f"{url}/_bulk?refresh=true", data=data, headers=headers) as r:
            body = await r.json()
            assert r.status == 200 and not body["errors"], body


@pytest.fixture(scope="session")
async def plain_index(es: ESTarget) -> str:
    await bulk_load(es.url, PLAIN, plain_mapping(), plain_docs())
    return PLAIN


@pytest.fixture(scope="session")
async def library_sidecar(es: ESTarget) -> AsyncIterator[RunningSidecar]:
    config = base_config(
        es.url,
        rollout={"default": "on"},
        rerank={
            "window": WINDOW,
            # The score cache is off: every search is scored by the model, as a first one is.
            "cache": {"enabled": False},
            "indices": [
                {
                    "pattern": "*-es-scores",
                    "fields": ["text", "content"],
                    "score_mode": "es_scores",
                },
                {"pattern": "lc-*", "fields": ["text"]},
                {"pattern": "hs-*", "fields": ["content"]},
            ],
        },
    )
    async with running_sidecar(config) as sc:
        yield sc
