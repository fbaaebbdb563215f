"""Small pieces: chunk windows, per-document max, padding, device choice, pass costs and
the pass planner, config checks."""

from __future__ import annotations

import collections
import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sidecar.config import ModelConfig, build_config
from sidecar.errors import ConfigError
from sidecar.scoring.detect import resolve_model
from sidecar.scoring.hf.chunking import first_chunks, windows
from sidecar.scoring.hf.device import attention_implementation, resolve_device, resolve_dtype
from sidecar.scoring.hf.seqcls import SeqClsBackend
from sidecar.scoring.local import passes
from sidecar.scoring.local.backend import Item, max_per_document
from sidecar.scoring.local.collate import collate
from sidecar.scoring.local.passes import PassCost, measure_costs, plan_passes


def test_windows_overlap_and_cap() -> None:
    ids = list(range(10))
    assert windows(ids, 4, 1, 10) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert windows(ids, 4, 1, 2) == [[0, 1, 2, 3], [3, 4, 5, 6]]
    assert windows(ids, 20, 5, 3) == [ids]
    assert windows(ids, 4, 0, 10) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_first_chunks() -> None:
    assert first_chunks([0, 0, 0, 1, 2, 2], 2) == [0, 1, 3, 4, 5]


def test_max_per_document() -> None:
    values = torch.tensor([0.1, 0.7, 0.3, 0.2])
    assert max_per_document(values, [0, 0, 1, 2], 3) == pytest.approx([0.7, 0.3, 0.2])
    assert max_per_document(values, [0, 1, 2, 3], 4) == pytest.approx(values.tolist())


@pytest.mark.parametrize("left", [True, False])
def test_collate(left: bool) -> None:
    batch = collate([Item([5, 6, 7], [0, 0, 1]), Item([8], [0])], 0, left=left)
    if left:
        assert batch.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
        assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    else:
        assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
        assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.token_type_ids is not None
    assert batch.token_type_ids.sum().item() == 1


def test_cpu_placement() -> None:
    device = resolve_device("cpu")
    assert resolve_dtype("auto", device) == torch.float32
    assert resolve_dtype("bfloat16", device) == torch.bfloat16
    assert attention_implementation(device, torch.float32) == "sdpa"
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert resolve_device("auto") == device


def _plan(lengths: list[int], budget: int, overhead: float) -> list[list[int]]:
    return [list(r) for r in plan_passes(lengths, budget=budget, overhead=overhead)]


def test_plan_passes_splits_where_padding_costs_more_than_a_pass() -> None:
    lengths = [100, 98, 20, 19, 18]
    assert _plan(lengths, 10_000, 10) == [[0, 1], [2, 3, 4]]
    assert _plan(lengths, 10_000, 1_000) == [[0, 1, 2, 3, 4]]
    assert _plan(lengths, 10_000, float("inf")) == [[0, 1, 2, 3, 4]]
    assert _plan([], 100, 0) == []


def test_plan_passes_respects_the_token_budget() -> None:
    assert _plan([50] * 5, 120, float("inf")) == [[0, 1], [2, 3], [4]]
    # An item longer than the budget still gets a pass of its own.
    assert _plan([500, 10, 10], 100, float("inf")) == [[0], [1, 2]]


def test_a_pass_cost_is_monotone_concave_and_extrapolates() -> None:
    # A noisy measurement: the 48-token pass looks cheaper than the 24-token one.
    cost = PassCost(0.002, [(12, 0.004), (24, 0.006), (48, 0.0055), (96, 0.009), (768, 0.06)])
    values = [cost(t) for t in range(0, 1600, 4)]
    assert values == sorted(values)  # more tokens never cost less
    per_token = [cost(t) / t for t in range(12, 1600, 4)]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(per_token))
    assert cost(0) == pytest.approx(0.002)
    assert cost(1536) == pytest.approx(cost(768) + (cost(768) - cost(96)) / 672 * 768)


def test_a_pass_cost_learns_from_what_passes_take() -> None:
    cost = PassCost(0.001, [(16, 0.002), (64, 0.004), (256, 0.01)])
    for _ in range(100):
        cost.observe(64, 0.008)  # passes near 64 tokens turn out twice as slow
    assert cost(64) == pytest.approx(0.008, rel=0.05)
    assert cost(4096) < 0.2  # extrapolated from the 256-token point's slope
    cost.observe(4096, 0.5)  # nothing was measured near there: this pass becomes a point
    assert cost(4096) == pytest.approx(0.5)
    assert cost(2048) < 0.5 and cost(8192) == pytest.approx(1.0, rel=0.05)


def test_bf16_like_costs_keep_big_passes_and_fp32_like_costs_cut_them() -> None:
    lengths = sorted([130, 128, 120, 100, 90, 64, 60, 40, 35, 30, 30, 28] * 4, reverse=True)
    # fp32-like: nearly linear in tokens, small fixed cost -> cut to save padding.
    linear = PassCost(0.0005, [(100, 0.010), (1000, 0.100), (6000, 0.600)])
    # bf16-like: small passes run a token several times slower -> keep passes big.
    kernels = PassCost(0.0005, [(100, 0.040), (1000, 0.100), (6000, 0.300)])
    cut = plan_passes(lengths, budget=32768, cost=linear)
    kept = plan_passes(lengths, budget=32768, cost=kernels)
    assert len(cut) > len(kept)
    assert len(kept) <= 2
    assert sum(len(r) for r in cut) == sum(len(r) for r in kept) == len(lengths)


def test_pass_costs_are_measured_on_the_real_model(bert1_dir: Path) -> None:
    model = ModelConfig(name=str(bert1_dir), self_test=False)
    backend = SeqClsBackend(model, resolve_model(model))
    backend.load()
    item = backend.encode("q", ["a short document"], "").items[0]
    with torch.inference_mode():
        cost = measure_costs(backend.forward, item, max_rows=8, max_tokens=10_000, repeats=1)
    assert cost(0) >= 0
    assert cost(8 * len(item.ids)) >= cost(len(item.ids)) > 0
    assert cost.describe().count("tok") >= 2  # 1, 2, 4, 8 rows unless a pass was too slow


def test_large_calibration_passes_are_timed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A pass of n rows takes exactly n ms on a clock the stand-in model advances.
    now = [0.0]
    calls: collections.Counter[int] = collections.Counter()

    def forward(items: list[Item]) -> None:
        calls[len(items)] += 1
        now[0] += 0.001 * len(items)

    monkeypatch.setattr(passes, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    cost = measure_costs(forward, Item([1, 2, 3]), max_rows=4096, max_tokens=10**6,
                         time_limit_s=0.4)  # fmt: skip
    # Up to 64 rows, three runs take under half the limit (0.2 s): the median of three.
    assert [calls[rows] for rows in (2, 4, 64)] == [3, 3, 3]
    assert calls[128] == 2  # 0.128 s, then 0.256 s: half the limit is spent
    # 256 rows take half the limit at once: once. 512 rows take more than the limit: once,
    # and the last size timed.
    assert calls[256] == 1 and calls[512] == 1 and 1024 not in calls
    assert cost(512 * 3) == pytest.approx(0.512)


def test_chunk_overlap_is_checked_only_where_chunks_are_made() -> None:
    # truncate: the overlap (64 by default) is unused
    assert build_config({"model": {"max_length": 128}}).model.max_length == 128
    chunked = {"max_length": 128, "long_documents": "chunk"}
    with pytest.raises(ConfigError, match=r"tuning\.model\.chunk_overlap_tokens"):
        build_config({"model": chunked})
    config = build_config({"model": chunked, "tuning": {"model": {"chunk_overlap_tokens": 32}}})
    assert config.tuning.model.chunk_overlap_tokens == 32
