"""The model-stage workload and yardsticks of the benchmark suite (scenarios 4 and 5).

Model: a cross-encoder with MiniLM-L6 dimensions (``devtools.tiny_models.MINILM_L6``, random
seeded weights, the bundled MiniLM tokenizer), so it runs offline and costs what
ms-marco-MiniLM-L6 costs. Workload: searches of ``DOCS_PER_REQUEST`` passage-like documents
(25 to 110 words, about 30 to 130 tokens). Yardstick: this machine's fp32 matmul throughput,
measured in the same run, against the model's forward FLOPs.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from devtools.fakes import PASSAGE_WORDS
from devtools.tiny_models import MINILM_L6, save_cross_encoder
from sidecar.scoring.base import Scorer

DOCS_PER_REQUEST = 20
CONCURRENT_REQUESTS = 16
DIMS = MINILM_L6


@dataclass(frozen=True)
class Workload:
    queries: list[str]
    #: requests[i] holds the documents of request i, asked with queries[i].
    requests: list[list[str]]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(q, d) for q, docs in zip(self.queries, self.requests, strict=True) for d in docs]


def make_workload(rng: random.Random, requests: int) -> Workload:
    def text(low: int, high: int) -> str:
        return " ".join(rng.choice(PASSAGE_WORDS) for _ in range(rng.randint(low, high)))

    return Workload(
        queries=[text(4, 10) for _ in range(requests)],
        requests=[[text(25, 110) for _ in range(DOCS_PER_REQUEST)] for _ in range(requests)],
    )


def build_model(directory: Path) -> Path:
    return save_cross_encoder(directory, DIMS, seed=0)


def matmul_gflops(m: int, k: int, n: int, seconds: float) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * m * k * n * runs / elapsed / 1e9


def flops_per_pair(tokens: int) -> float:
    """Forward FLOPs of one encoder pass: projections and FFN per token, attention per pair."""
    per_token = 2 * (4 * DIMS.hidden * DIMS.hidden + 2 * DIMS.hidden * DIMS.ffn)
    attention = 4 * tokens * tokens * DIMS.hidden
    return DIMS.layers * (tokens * per_token + attention)


def bare_round(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """Seconds for one ``model(**batch)`` loop over pre-tokenized, padded batches."""
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            model(**batch)
    return time.perf_counter() - started


def padded_batches(
    tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]], size: int
) -> list[dict[str, torch.Tensor]]:
    return [
        dict(
            tokenizer(
                [q for q, _ in pairs[i : i + size]],
                [d for _, d in pairs[i : i + size]],
                padding=True,
                truncation="only_second",
                return_tensors="pt",
            )
        )
        for i in range(0, len(pairs), size)
    ]


async def serve_all(scorer: Scorer, work: Workload) -> float:
    """Seconds to score every request, all submitted at once (the worker is never idle)."""
    started = time.perf_counter()
    await asyncio.gather(
        *(scorer.score(q, docs) for q, docs in zip(work.queries, work.requests, strict=True))
    )
    return time.perf_counter() - started


async def serve_one_by_one(scorer: Scorer, work: Workload) -> float:
    started = time.perf_counter()
    for query, docs in zip(work.queries, work.requests, strict=True):
        await scorer.score(query, docs)
    return time.perf_counter() - started
