"""Small pure pieces: chunk windows, per-document max, padding, device choice."""

from __future__ import annotations

import pytest
import torch

from sidecar.scoring.hf.chunking import first_chunks, windows
from sidecar.scoring.hf.device import attention_implementation, resolve_device, resolve_dtype
from sidecar.scoring.local.backend import Item, max_per_document
from sidecar.scoring.local.collate import collate
from sidecar.scoring.local.passes import plan_passes


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
