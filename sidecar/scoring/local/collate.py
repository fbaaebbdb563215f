"""Padding a list of items into one batch of tensors.

Built with one flat ``torch.tensor`` and a boolean scatter rather than a tensor per row:
the worker does this for every forward pass, so it has to stay well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import torch

from sidecar.scoring.local.backend import Item


@dataclass(frozen=True, slots=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None


def collate(items: Sequence[Item], pad_id: int, *, left: bool) -> Batch:
    """Pad to the longest item; ``left`` puts the padding before the tokens (causal LMs)."""
    lengths = torch.tensor([len(item.ids) for item in items], dtype=torch.long)
    width = int(lengths.max())
    columns = torch.arange(width)
    if left:
        mask = columns.unsqueeze(0) >= (width - lengths).unsqueeze(1)
    else:
        mask = columns.unsqueeze(0) < lengths.unsqueeze(1)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    # Row-major order of the True cells is exactly the items' tokens in order.
    input_ids[mask] = torch.tensor(list(chain.from_iterable(item.ids for item in items)))
    token_type_ids = None
    if items[0].type_ids is not None:
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[mask] = torch.tensor(
            list(chain.from_iterable(item.type_ids or () for item in items))
        )
    return Batch(input_ids, mask.long(), token_type_ids)
