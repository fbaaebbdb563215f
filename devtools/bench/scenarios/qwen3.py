"""Scenario 7: Qwen3-Reranker's architecture on this CPU: the shared prefix vs the plain
path, the two-row head vs the full vocabulary, and the serving stack vs a bare
``model(**batch)`` loop in fp32 and bf16 (pass sizing). Every ratio is measured against
its baseline in the same run, in interleaved rounds."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Callable
from typing import Literal

import torch
from transformers import AutoModelForCausalLM

from devtools.bench import qwen3_work as qw
from devtools.bench.results import Goal, Section
from devtools.bench.servers import Bench
from sidecar.config import DEFAULT_INSTRUCTION, ModelConfig, ModelTuning, TuningConfig
from sidecar.scoring.factory import create_scorer
from sidecar.scoring.hf.qwen3 import Qwen3Backend
from sidecar.scoring.local.scorer import LocalScorer

Dtype = Literal["float32", "bfloat16"]
PREFIX_TITLES = 1.8
PREFIX_LONG = 1.0
STACK_VS_BARE = 0.9


def _config(directory: str, dtype: Dtype) -> ModelConfig:
    # Random weights rank at random: the start-up self-test would refuse the model.
    return ModelConfig(name=directory, device="cpu", dtype=dtype, self_test=False)


def _tuning(*, reuse: bool) -> TuningConfig:
    return TuningConfig(model=ModelTuning(prefix_reuse=reuse))


def _backend(scorer: object) -> Qwen3Backend:
    assert isinstance(scorer, LocalScorer)
    backend = scorer._backend
    assert isinstance(backend, Qwen3Backend)
    return backend


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(b: Bench, *, layers: int = 2, rounds: int | None = None) -> Section:
    sec = Section(
        7,
        f"Qwen3-Reranker-0.6B's architecture on this CPU ({layers} of its 28 layers): shared "
        "prefix, two-row head, passes sized for the kernels",
    )
    rng = random.Random(11)
    vocab, vocab_kind = qw.tokenizer()
    directory, dims = qw.build(b.work / f"qwen3-0.6b-{layers}l", layers, vocab)
    titles = qw.titles(rng, vocab, b.scale(3, 2), 20)
    long = qw.fixed(rng, vocab, b.scale(2, 1), b.scale(10, 6), 256)
    rounds = rounds or b.scale(3, 2)
    worker = TuningConfig().worker
    times: dict[str, list[float]] = {}
    passes: dict[str, list[int]] = {}

    def record(key: str) -> Callable[[int, int, float], None]:
        def observe(pairs: int, tokens: int, seconds: float) -> None:
            passes.setdefault(key, []).append(pairs)

        return observe

    async def prefix_and_stack() -> None:
        scorers = {
            "reuse fp32": create_scorer(_config(str(directory), "float32"), _tuning(reuse=True)),
            "plain fp32": create_scorer(_config(str(directory), "float32"), _tuning(reuse=False)),
            "plain bf16": create_scorer(_config(str(directory), "bfloat16"), _tuning(reuse=False)),
        }
        for scorer in scorers.values():
            await scorer.start()
        bare = {
            "fp32": AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32),
            "bf16": AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.bfloat16),
        }
        batches = qw.bare_batches(vocab, titles, worker.max_batch_pairs, torch.device("cpu"))
        try:
            for scorer in scorers.values():  # warm: first calls pay one-off costs
                await qw.serve_all(scorer, qw.Searches(titles.queries[:1], titles.documents[:1]))
            for model in bare.values():
                model.train(False)
                qw.bare_round(model, batches[:1])
            for key, scorer in scorers.items():
                scorer.add_batch_observer(record(key))
            for _ in range(rounds):
                for key in ("reuse fp32", "plain fp32"):
                    times.setdefault(f"titles {key}", []).append(
                        await qw.serve_all(scorers[key], titles)
                    )
                    times.setdefault(f"long {key}", []).append(
                        await qw.serve_all(scorers[key], long)
                    )
                for kind in ("fp32", "bf16"):
                    times.setdefault(f"bare {kind}", []).append(qw.bare_round(bare[kind], batches))
                times.setdefault("titles plain bf16", []).append(
                    await qw.serve_all(scorers["plain bf16"], titles)
                )
            # Two-row head vs the full vocabulary: the same items, the same passes.
            backend = _backend(scorers["plain fp32"])
            items = [
                item
                for q, docs in zip(titles.queries, titles.documents, strict=True)
                for item in backend.encode(q, docs, DEFAULT_INSTRUCTION).items
            ]
            size = worker.max_batch_pairs
            groups = [items[i : i + size] for i in range(0, len(items), size)]
            with torch.inference_mode():
                for _ in range(rounds):
                    for key, forward in (
                        ("two-row head", backend.forward),
                        ("full head", backend._forward_full_head),
                    ):
                        started = asyncio.get_running_loop().time()
                        for group in groups:
                            forward(group)
                        elapsed = asyncio.get_running_loop().time() - started
                        times.setdefault(key, []).append(elapsed)
        finally:
            for scorer in scorers.values():
                await scorer.close()

    asyncio.run(prefix_and_stack())
    med = {key: _median(value) for key, value in times.items()}
    n_titles, n_long = titles.pairs, long.pairs
    reuse_titles = med["titles plain fp32"] / med["titles reuse fp32"]
    reuse_long = med["long plain fp32"] / med["long reuse fp32"]
    head = med["full head"] / med["two-row head"]
    stack = {
        "fp32": med["bare fp32"] / med["titles plain fp32"],
        "bf16": med["bare bf16"] / med["titles plain bf16"],
    }
    per_pass = {key: statistics.mean(v) for key, v in passes.items() if v}
    title_tokens = qw.tokens_per_pair(vocab, titles)
    long_tokens = qw.tokens_per_pair(vocab, long)
    head_flops = 2 * dims.vocab * dims.hidden
    layer_flops = 2 * (
        dims.hidden * dims.heads * dims.head_dim * 2
        + dims.hidden * dims.kv_heads * dims.head_dim * 2
        + 3 * dims.hidden * dims.ffn
    )
    share_28 = head_flops / (head_flops + 28 * layer_flops * title_tokens)
    sec.body += [
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads. Model: "
        f"Qwen3ForCausalLM with Qwen3-Reranker-0.6B's widths (hidden {dims.hidden}, "
        f"{dims.heads} heads, {dims.kv_heads} KV heads, head_dim {dims.head_dim}, FFN "
        f"{dims.ffn}, {dims.vocab} tokens), {layers} layers, random weights; tokenizer: "
        f"{vocab_kind}. Searches of 20 catalogue titles ({n_titles} pairs, "
        f"{title_tokens:.0f} prompt tokens per pair) and of 256-token documents ({n_long} "
        f"pairs, {long_tokens:.0f} tokens per pair), all submitted at once through "
        f"`Scorer.score`. {rounds} interleaved rounds, medians.",
        "",
        "| contender | titles pairs/s | 256-token pairs/s | pairs per pass |",
        "|---|---|---|---|",
        f"| shared prefix, fp32 | {n_titles / med['titles reuse fp32']:.1f} | "
        f"{n_long / med['long reuse fp32']:.1f} | {per_pass.get('reuse fp32', 0):.1f} |",
        f"| plain path, fp32 | {n_titles / med['titles plain fp32']:.1f} | "
        f"{n_long / med['long plain fp32']:.1f} | {per_pass.get('plain fp32', 0):.1f} |",
        f"| plain path, bf16 | {n_titles / med['titles plain bf16']:.1f} | – | "
        f"{per_pass.get('plain bf16', 0):.1f} |",
        f"| bare `model(**batch)` fp32 (sorted batches of {worker.max_batch_pairs}) | "
        f"{n_titles / med['bare fp32']:.1f} | – | {worker.max_batch_pairs} |",
        f"| bare `model(**batch)` bf16 | {n_titles / med['bare bf16']:.1f} | – | "
        f"{worker.max_batch_pairs} |",
        "",
        f"Shared prefix vs plain path: **{reuse_titles:.2f}×** at titles, "
        f"**{reuse_long:.2f}×** at 256-token documents. Two-row head vs the full "
        f"{dims.vocab}-row head on the same passes: **{head:.2f}×** (at {layers} layers; the "
        f"full head is {share_28:.1%} of a title pair's FLOPs at all 28). Serving stack "
        f"(plain path) vs the bare loop: fp32 **{stack['fp32']:.2f}×**, bf16 "
        f"**{stack['bf16']:.2f}×**.",
    ]
    sec.goals += [
        Goal(
            "7 shared prefix, titles",
            f"≥ {PREFIX_TITLES}× the plain path",
            f"{reuse_titles:.2f}×",
            reuse_titles >= PREFIX_TITLES,
            "" if reuse_titles >= PREFIX_TITLES else f"{title_tokens:.0f} tokens per pair",
        ),
        Goal(
            "7 shared prefix, 256-token documents",
            f"≥ {PREFIX_LONG}× (no slower)",
            f"{reuse_long:.2f}×",
            reuse_long >= PREFIX_LONG,
            "" if reuse_long >= PREFIX_LONG else f"{long_tokens:.0f} tokens per pair",
        ),
        Goal("7 two-row head", "none (measured)", f"{head:.2f}× the full head", None),
    ]
    for kind in ("fp32", "bf16"):
        ok = stack[kind] >= STACK_VS_BARE
        sec.goals.append(
            Goal(
                f"7 Qwen3 serving stack vs bare loop, {kind}",
                f"≥ {STACK_VS_BARE}×",
                f"{stack[kind]:.2f}×",
                ok,
                "" if ok else f"{per_pass.get('plain ' + kind, 0):.1f} pairs per pass",
            )
        )
    return sec
