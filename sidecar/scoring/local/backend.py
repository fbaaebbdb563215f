"""The synchronous contract between a local model and the batching worker.

A backend turns one request into :class:`Item` s (token ids, ready for the model), runs
forward passes over items from many requests at once, and folds one request's outputs back
into one score per document. ``encode`` runs in a thread pool, ``forward`` only on the
worker thread, ``combine`` on the worker thread once all of a request's items are done.

A document can become several items (``long_documents: chunk``); a bi-encoder adds one item
for the query itself. ``owners`` says which document each item belongs to.

Items of one request may share a :class:`SharedPrefix` (Qwen3 with ``model.prefix_reuse``):
tokens that come before every item of the request, which the backend computes once and
keeps in ``state`` (on the worker thread) for as long as the request lives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from sidecar.scoring.base import ModelInfo

#: ``owners`` value of the item that embeds the query (bi-encoders only).
QUERY_OWNER = -1


class SharedPrefix:
    """Tokens that precede each of a request's items; ``state`` is the backend's (its
    attention keys and values), filled on the worker thread the first time it is needed."""

    __slots__ = ("ids", "state")

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.state: object | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One input sequence of the model, special tokens included, not padded. With a
    ``prefix``, the model's input is ``prefix.ids + ids`` and ``ids`` is what a pass runs."""

    ids: list[int]
    #: Segment ids for models that take them (BERT); None for those that don't.
    type_ids: list[int] | None = None
    prefix: SharedPrefix | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Encoded:
    items: list[Item]
    owners: list[int]
    n_docs: int
    #: Tokens the model processes for the request: every item, and each shared prefix once.
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        prefixes = {id(item.prefix): item.prefix for item in self.items if item.prefix}
        shared = sum(len(prefix.ids) for prefix in prefixes.values())
        object.__setattr__(self, "tokens", shared + sum(len(item.ids) for item in self.items))


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
