"""What the transformers backends share: placement, model files, and the tokenizer lock."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

from sidecar.config import ModelConfig
from sidecar.scoring.base import BackendKindName, ModelInfo
from sidecar.scoring.detect import ResolvedModel
from sidecar.scoring.hf.device import apply_cpu_threads, dtype_name, resolve_device, resolve_dtype
from sidecar.scoring.hf.hub import hub_snapshot


class TransformersBackend:
    kind: ClassVar[BackendKindName]

    def __init__(self, config: ModelConfig, resolved: ResolvedModel) -> None:
        self._config = config
        self._resolved = resolved
        self._device = resolve_device(config.device)
        self._dtype = resolve_dtype(config.dtype, self._device)
        # transformers re-applies truncation/padding settings to the shared Rust tokenizer on
        # every call, so concurrent encode() calls with different settings would race.
        self._tokenizer_lock = threading.Lock()
        self.info = ModelInfo(
            name=config.name,
            kind=self.kind,
            source=str(resolved.directory or config.name),
            device=str(self._device),
            dtype=dtype_name(self._dtype),
            max_length=config.max_length,
            languages=config.languages,
        )

    def _model_files(self) -> Path:
        """The local directory of the model, downloading it first for a hub id (blocking)."""
        apply_cpu_threads(self._config.cpu_threads)
        return self._resolved.directory or hub_snapshot(self._config.name)


def not_loaded(name: str) -> RuntimeError:
    # A programming error (the worker starts only after load()), not a client-visible one.
    return RuntimeError(f"model {name!r} is used before load()")
