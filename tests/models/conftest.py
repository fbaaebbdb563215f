"""Tiny real models, built once per session and saved the way the hub ships them
(``devtools.tiny_models``, the builder the benchmarks use too):

* a Qwen3ForCausalLM (2 layers, hidden 64, seeded random weights) with a byte-level BPE
  tokenizer trained on the reranker's prompt vocabulary with Qwen's own pre-tokenizer regex;
* BertForSequenceClassification cross-encoders (1 and 2 labels) on the bundled MiniLM
  WordPiece tokenizer.

Everything is offline: HF_HUB_OFFLINE is set before huggingface_hub is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from devtools.tiny_models import QWEN_CORPUS, TINY, qwen_tokenizer, save_cross_encoder, save_qwen
from sidecar.config import ModelConfig, WorkerConfig
from sidecar.scoring.base import Scorer
from sidecar.scoring.factory import create_scorer


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = qwen_tokenizer(QWEN_CORPUS)
    assert isinstance(tokenizer.convert_tokens_to_ids("yes"), int)
    assert isinstance(tokenizer.convert_tokens_to_ids("no"), int)
    return save_qwen(tmp_path_factory.mktemp("tiny-qwen3"), tokenizer)


@pytest.fixture(scope="session")
def qwen_dir_without_yes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = qwen_tokenizer([text.replace("yes", "") for text in QWEN_CORPUS])
    assert tokenizer.convert_tokens_to_ids("yes") is None
    return save_qwen(tmp_path_factory.mktemp("tiny-qwen3-no-yes"), tokenizer)


@pytest.fixture(scope="session")
def bert1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_cross_encoder(tmp_path_factory.mktemp("tiny-bert-1"), TINY, labels=1, seed=1)


@pytest.fixture(scope="session")
def bert2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_cross_encoder(tmp_path_factory.mktemp("tiny-bert-2"), TINY, labels=2, seed=2)


StartScorer = Callable[..., Awaitable[Scorer]]


@pytest.fixture
async def start_scorer() -> AsyncIterator[StartScorer]:
    """Build through the real factory (detection included), start, and close at the end."""
    started: list[Scorer] = []

    async def start(
        name: str | Path, *, worker: dict[str, Any] | None = None, **model: Any
    ) -> Scorer:
        scorer = create_scorer(ModelConfig(name=str(name), **model), WorkerConfig(**(worker or {})))
        started.append(scorer)
        await scorer.start()
        return scorer

    yield start
    for scorer in started:
        await scorer.close()
