"""The synchronous contract between a local model and the batching worker.

A backend turns one request into :class:`Item` s (token ids, ready for the model), runs
forward passes over items from many requests at once, and folds one request's outputs back
into one score per document. ``encode`` runs in a thread pool, ``forward`` only on the
worker thread, ``combine`` on the worker thread once all of a request's items are done.

A document can become several items (``long_documents: chunk``); a bi-encoder adds one item
for the query itself. ``owners`` says which document each item belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from sidecar.scoring.base import ModelInfo

#: ``owners`` value of the item that embeds the query (bi-encoders only).
QUERY_OWNER = -1


@dataclass(frozen=True, slots=True)
class Item:
    """One input sequence of the model, special tokens included, not padded."""

    ids: list[int]
    #: Segment ids for models that take them (BERT); None for those that don't.
    type_ids: list[int] | None = None


@dataclass(frozen=True, slots=True)
class Encoded:
    items: list[Item]
    owners: list[int]
    n_docs: int
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", sum(len(item.ids) for item in self.items))


class LocalBackend(Protocol):
    info: ModelInfo

    def load(self) -> None:
        """Load tokenizer and weights (blocking; called once, off the event loop)."""

    def encode(self, query: str, documents: Sequence[str], instruction: str) -> Encoded:
        """Tokenize, truncating or chunking long documents; thread-safe."""

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        """One forward pass; row i is the output for ``items[i]`` (on the CPU)."""

    def combine(self, encoded: Encoded, outputs: torch.Tensor) -> list[float]:
        """One score per document, in document order, from all of a request's outputs."""


def max_per_document(values: torch.Tensor, owners: Sequence[int], n_docs: int) -> list[float]:
    """A chunked document scores as its best chunk."""
    if len(owners) == n_docs:
        # One item per document, already in order: the common case needs no reduction.
        return [float(v) for v in values.tolist()]
    index = torch.tensor(owners, dtype=torch.long)
    best = torch.full((n_docs,), float("-inf"), dtype=values.dtype)
    best.scatter_reduce_(0, index, values, reduce="amax")
    return [float(v) for v in best.tolist()]
