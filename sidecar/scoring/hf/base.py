"""What every transformers backend does the same way, so that each says only what differs.

:class:`HFBackend` places the model (device, dtype), finds its files, loads tokenizer and
weights with failures named for the operator, holds the loaded state, and pads items into
model inputs. A backend implements ``_load`` (what to load and what to check), ``encode``
and ``forward``, and ``combine`` where a document's score is not its best item's output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from transformers import PreTrainedTokenizerBase

from sidecar.config import Backend, ModelConfig, ModelTuning
from sidecar.scoring.base import ModelInfo, ResolvedModel
from sidecar.scoring.hf.device import (
    apply_cpu_threads,
    dtype_name,
    resolve_device,
    resolve_dtype,
)
from sidecar.scoring.hf.hub import hub_snapshot
from sidecar.scoring.hf.load import load_tokenizer, load_weights
from sidecar.scoring.hf.plaintext import ControlIds, plain_text_tokenizer
from sidecar.scoring.hf.quantize import quantize_for_cpu
from sidecar.scoring.local.backend import Encoded, Item, max_per_document
from sidecar.scoring.local.collate import collate


@dataclass(frozen=True)
class Loaded:
    """A backend's tokenizer and model; each backend adds what it derives from them."""

    tokenizer: PreTrainedTokenizerBase
    model: torch.nn.Module
    pad: int = field(init=False)
    #: Whether the model takes segment ids (BERT does).
    with_types: bool = field(init=False)
    #: What tokenizes client text (query, instruction, documents): the tokenizer without
    #: its added tokens, so a special token's string in a document stays text.
    plain: PreTrainedTokenizerBase = field(init=False)
    control: ControlIds = field(init=False)

    def __post_init__(self) -> None:
        pad = self.tokenizer.pad_token_id
        # Padded positions are masked out, so any id does when the tokenizer names none.
        object.__setattr__(self, "pad", pad if isinstance(pad, int) else 0)
        with_types = "token_type_ids" in self.tokenizer.model_input_names
        object.__setattr__(self, "with_types", with_types)
        plain = plain_text_tokenizer(self.tokenizer)
        object.__setattr__(self, "plain", plain)
        name = str(self.tokenizer.name_or_path)
        object.__setattr__(self, "control", ControlIds(self.tokenizer, plain, model=name))


LoadedT = TypeVar("LoadedT", bound=Loaded)


class HFBackend(Generic[LoadedT]):
    backend: ClassVar[Backend]

    def __init__(
        self, config: ModelConfig, resolved: ResolvedModel, tuning: ModelTuning | None = None
    ) -> None:
        self._config = config
        self._tuning = tuning or ModelTuning()
        self._resolved = resolved
        self._device = resolve_device(config.device)
        self._dtype = resolve_dtype(config.dtype, self._device)
        # transformers re-applies truncation/padding settings to the shared Rust tokenizer on
        # every call, so concurrent encode() calls with different settings would race.
        self._tokenizer_lock = threading.Lock()
        self._state: LoadedT | None = None
        self.info = ModelInfo(
            name=config.name,
            backend=self.backend,
            source=str(resolved.directory or config.name),
            device=str(self._device),
            dtype=dtype_name(self._dtype),
            max_length=config.max_length,
            languages=config.languages or (),
        )

    def load(self) -> None:
        """Load tokenizer and weights (blocking; called once, off the event loop)."""
        apply_cpu_threads(self._tuning.cpu_threads)
        # A hub id is downloaded here, not at detection, so that only start() is slow.
        files = self._resolved.directory or hub_snapshot(self._config.name)
        self._state, self.info = self._load(files)

    def _load(self, files: Path) -> tuple[LoadedT, ModelInfo]:
        """The loaded state from the model's directory, and ``info`` updated to match."""
        raise NotImplementedError

    def _loaded(self) -> LoadedT:
        if self._state is None:
            # A programming error (the worker starts only after load()), not a client one.
            raise RuntimeError(f"model {self._config.name!r} is used before load()")
        return self._state

    def _tokenizer(self, path: Path, **options: Any) -> PreTrainedTokenizerBase:
        return load_tokenizer(path, model=self._config.name, **options)

    def _weights(
        self, from_pretrained: Callable[..., object], path: Path, **options: Any
    ) -> torch.nn.Module:
        return load_weights(
            from_pretrained,
            path,
            model=self._config.name,
            device=self._device,
            dtype=self._dtype,
            **options,
        )

    def _quantized(self, model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
        """``model.cpu_quantization`` applied, and how, for the model info."""
        return quantize_for_cpu(model, self._config.cpu_quantization, self._device)

    def _inputs(self, items: Sequence[Item], *, left: bool) -> dict[str, torch.Tensor]:
        """``items`` padded into model inputs on the model's device."""
        batch = collate(items, self._loaded().pad, left=left)
        inputs = {
            "input_ids": batch.input_ids.to(self._device),
            "attention_mask": batch.attention_mask.to(self._device),
        }
        if batch.token_type_ids is not None:
            inputs["token_type_ids"] = batch.token_type_ids.to(self._device)
        return inputs

    def combine(self, encoded: Encoded, outputs: torch.Tensor) -> list[float]:
        """A document scores as its best item (chunk)."""
        return max_per_document(outputs, encoded.owners, encoded.n_docs)
