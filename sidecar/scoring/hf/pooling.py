"""Sentence-transformers pooling (token embeddings -> one vector), as ``1_Pooling`` says."""

from __future__ import annotations

from typing import Any, Literal

import torch

from sidecar.errors import ModelLoadError

PoolingMode = Literal["mean", "cls", "max", "mean_sqrt_len"]

_KEYS: dict[str, PoolingMode] = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}


def pooling_mode(config: Any, *, model: str) -> PoolingMode:
    """The one enabled mode; sentence-transformers would concatenate several, we refuse."""
    if not isinstance(config, dict):
        raise ModelLoadError(f"model {model!r}: its pooling config is not a JSON object")
    enabled = [key for key, value in config.items() if key.startswith("pooling_mode") and value]
    if len(enabled) != 1 or enabled[0] not in _KEYS:
        raise ModelLoadError(
            f"model {model!r}: unsupported pooling {enabled or 'none'}; exactly one of "
            f"{sorted(_KEYS)} must be enabled"
        )
    return _KEYS[enabled[0]]


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """``hidden`` is (batch, tokens, dim); ``mask`` is 1 on real tokens, 0 on padding."""
    if mode == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    if mode == "mean":
        return summed / counts
    return summed / counts.sqrt()
