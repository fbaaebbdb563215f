"""The batching worker, around a real tiny cross-encoder.

The backend subclasses below only watch (and can hold) the real forward pass: every score
still comes from the real model.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from sidecar.config import ModelConfig, ModelTuning, TuningConfig, WorkerConfig
from sidecar.deadline import Deadline
from sidecar.errors import ModelFailure, Overloaded, RerankTimeout, RerankUnavailable
from sidecar.scoring.detect import resolve_model
from sidecar.scoring.hf.seqcls import SeqClsBackend
from sidecar.scoring.local.backend import Item
from sidecar.scoring.local.scorer import LocalScorer


class WatchedBackend(SeqClsBackend):
    """Records every forward pass (and the thread that ran it) and can hold the worker
    inside one."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.passes: list[list[list[int]]] = []
        self.threads: set[threading.Thread] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.inside = threading.Event()

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        self.threads.add(threading.current_thread())
        self.inside.set()
        self.gate.wait(timeout=30)
        self.passes.append([item.ids for item in items])
        return super().forward(items)


class DroppingBackend(WatchedBackend):
    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        return super().forward(items)[:-1]


class NanBackend(WatchedBackend):
    """Once ``broken``, the real model's outputs turned non-finite (what broken weights
    give)."""

    broken = False

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        outputs = super().forward(items)
        return outputs * float("nan") if self.broken else outputs


class FlakyBackend(WatchedBackend):
    fail_next = False

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("simulated device error")
        return super().forward(items)


Harness = tuple[LocalScorer, WatchedBackend]


@pytest.fixture
async def make(bert1_dir: Path) -> AsyncIterator[Any]:
    scorers: list[LocalScorer] = []

    async def build(cls: type[WatchedBackend] = WatchedBackend, **worker: Any) -> Harness:
        model = ModelConfig(name=str(bert1_dir), self_test=False)
        backend = cls(model, resolve_model(model))
        # A measured pass overhead depends on the machine; these tests pin it.
        pinned = WorkerConfig(**{"pass_overhead_tokens": 1_000_000, **worker})
        scorer = LocalScorer(backend, model, TuningConfig(worker=pinned))
        scorers.append(scorer)
        await scorer.start()
        backend.passes.clear()
        return scorer, backend

    yield build
    for scorer in scorers:
        await scorer.close()


async def _hold(scorer: LocalScorer, backend: WatchedBackend) -> asyncio.Task[Any]:
    """Start a one-document request and wait until the worker is stuck inside its pass."""
    backend.gate.clear()
    backend.inside.clear()
    task = asyncio.create_task(scorer.score("blocker", ["the worker is busy with this"]))
    await asyncio.to_thread(backend.inside.wait, 10)
    return task


async def _until_queued(scorer: LocalScorer, pairs: int) -> None:
    for _ in range(500):
        if scorer.queued_pairs == pairs:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"queue never reached {pairs} pairs")


def _requests() -> list[tuple[str, list[str]]]:
    return [
        (
            f"query number {i} about cities",
            [f"document {i}.{j} " + "word " * (i * 3 + j) for j in range(1 + i % 4)],
        )
        for i in range(8)
    ]


async def test_concurrent_requests_get_their_own_scores(make: Any) -> None:
    scorer, backend = await make()
    requests = _requests()
    alone = [(await scorer.score(q, docs)).scores for q, docs in requests]
    backend.passes.clear()

    blocker = await _hold(scorer, backend)
    tasks = [asyncio.create_task(scorer.score(q, docs)) for q, docs in requests]
    await _until_queued(scorer, sum(len(docs) for _, docs in requests))
    backend.gate.set()
    together = [(await task).scores for task in tasks]
    await blocker

    for got, expected in zip(together, alone, strict=True):
        assert got == pytest.approx(expected, abs=1e-5)
    # Everything queued behind the blocker went through the model in one coalesced pass.
    assert [len(p) for p in backend.passes] == [1, sum(len(d) for _, d in requests)]


@pytest.mark.parametrize("overhead", [0, 40, 1_000_000])
async def test_passes_are_length_sorted_and_within_the_token_budget(
    make: Any, overhead: int
) -> None:
    scorer, backend = await make(max_batch_tokens=300, pass_overhead_tokens=overhead)
    requests = _requests()
    alone = [(await scorer.score(q, docs)).scores for q, docs in requests]
    blocker = await _hold(scorer, backend)
    backend.passes.clear()
    tasks = [asyncio.create_task(scorer.score(q, docs)) for q, docs in requests]
    await _until_queued(scorer, sum(len(docs) for _, docs in requests))
    backend.gate.set()
    together = [(await task).scores for task in tasks]
    await blocker
    passes = backend.passes[1:]
    assert len(passes) > 1
    assert sum(len(batch) for batch in passes) == sum(len(docs) for _, docs in requests)
    for batch in passes:
        lengths = [len(ids) for ids in batch]
        assert lengths == sorted(lengths, reverse=True)
        assert len(batch) == 1 or len(batch) * lengths[0] <= 300
    for got, expected in zip(together, alone, strict=True):
        assert got == pytest.approx(expected, abs=1e-5)


async def test_a_full_queue_refuses_at_once(make: Any) -> None:
    scorer, backend = await make(max_queue_pairs=4)
    blocker = await _hold(scorer, backend)
    queued = asyncio.create_task(scorer.score("q", ["a", "b", "c"]))
    await _until_queued(scorer, 3)
    with pytest.raises(Overloaded):
        await scorer.score("q", ["d", "e"])
    with pytest.raises(Overloaded):
        await scorer.score("q", ["too", "many", "for", "the", "queue"])
    backend.gate.set()
    assert len((await queued).scores) == 3
    await blocker
    assert len((await scorer.score("q", ["d", "e"])).scores) == 2


async def test_abandoned_work_never_reaches_the_model(make: Any, bert1_dir: Path) -> None:
    scorer, backend = await make()
    blocker = await _hold(scorer, backend)
    backend.passes.clear()

    cancelled = asyncio.create_task(scorer.score("q", ["cancelled document zebra"]))
    await _until_queued(scorer, 1)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert scorer.queued_pairs == 0

    with pytest.raises(RerankTimeout):
        await scorer.score("q", ["expired document giraffe"], deadline=Deadline.after(0.05))
    kept = asyncio.create_task(scorer.score("q", ["kept document"]))
    await _until_queued(scorer, 1)
    backend.gate.set()
    await blocker
    assert len((await kept).scores) == 1

    tokenizer = AutoTokenizer.from_pretrained(str(bert1_dir))
    seen = " ".join(tokenizer.decode(ids) for batch in backend.passes for ids in batch)
    assert "kept" in seen
    assert "zebra" not in seen and "giraffe" not in seen
    assert sum(len(batch) for batch in backend.passes) == 2  # the blocker and the kept one


async def test_timeout_while_being_scored(make: Any) -> None:
    scorer, backend = await make()
    backend.gate.clear()
    with pytest.raises(RerankTimeout):
        await scorer.score("q", ["slow"], deadline=Deadline.after(0.05))
    backend.gate.set()
    assert len((await scorer.score("q", ["fine"])).scores) == 1


async def test_close_fails_pending_work_and_joins_the_thread(make: Any) -> None:
    scorer, backend = await make()
    blocker = await _hold(scorer, backend)
    pending = asyncio.create_task(scorer.score("q", ["waiting"]))
    await _until_queued(scorer, 1)
    closing = asyncio.create_task(scorer.close())
    with pytest.raises(RerankUnavailable):
        await pending
    backend.gate.set()
    await closing
    assert len((await blocker).scores) == 1  # the pass in progress was allowed to finish
    (thread,) = backend.threads  # the worker's: it ran every pass
    assert not thread.is_alive()
    assert not scorer.ready
    with pytest.raises(RerankUnavailable):
        await scorer.score("q", ["after close"])


async def test_non_finite_scores_are_a_model_failure(make: Any) -> None:
    scorer, backend = await make(cls=NanBackend)
    assert isinstance(backend, NanBackend)
    backend.broken = True
    with pytest.raises(ModelFailure):
        await scorer.score("q", ["a", "b"])


async def test_a_wrong_count_is_a_model_failure(bert1_dir: Path) -> None:
    model = ModelConfig(name=str(bert1_dir), self_test=False)
    backend = DroppingBackend(model, resolve_model(model))
    scorer = LocalScorer(backend, model, TuningConfig(model=ModelTuning(warmup=False)))
    await scorer.start()
    try:
        with pytest.raises(ModelFailure):
            await scorer.score("q", ["a", "b"])
    finally:
        await scorer.close()


async def test_the_pass_overhead_is_measured_at_warm_up(bert1_dir: Path) -> None:
    model = ModelConfig(name=str(bert1_dir), self_test=False)
    scorer = LocalScorer(SeqClsBackend(model, resolve_model(model)), model, TuningConfig())
    assert "pass_overhead_tokens" not in scorer.info.extra  # unknown until measured
    await scorer.start()
    try:
        measured = float(scorer.info.extra["pass_overhead_tokens"])
        assert math.isfinite(measured) and measured >= 0
        assert len((await scorer.score("q", ["a", "b c d e f g"])).scores) == 2
    finally:
        await scorer.close()


async def test_the_worker_survives_a_failing_pass(make: Any) -> None:
    scorer, backend = await make(cls=FlakyBackend)
    assert isinstance(backend, FlakyBackend)
    backend.fail_next = True
    with pytest.raises(ModelFailure):
        await scorer.score("q", ["a"])
    result = await scorer.score("q", ["a", "b"])
    assert len(result.scores) == 2
    assert result.model_s > 0 and result.queue_s >= 0 and result.tokens > 0
