"""Building the configured :class:`~sidecar.scoring.base.Scorer`.

``create_scorer`` is quick: it detects the backend from the model's small files (config.json,
modules.json, or the URL) and builds an unstarted scorer. Weights are loaded by
``await scorer.start()``, in a thread, followed by a warm-up pass.
"""

from __future__ import annotations

from collections.abc import Callable

from sidecar.config import Backend, ModelConfig, ModelTuning, TuningConfig
from sidecar.scoring.base import ResolvedModel, Scorer
from sidecar.scoring.detect import resolve_model
from sidecar.scoring.hf.biencoder import BiEncoderBackend
from sidecar.scoring.hf.qwen3 import Qwen3Backend
from sidecar.scoring.hf.seqcls import SeqClsBackend
from sidecar.scoring.local.backend import LocalBackend
from sidecar.scoring.local.scorer import LocalScorer
from sidecar.scoring.remote import RemoteScorer

_LOCAL: dict[Backend, Callable[[ModelConfig, ResolvedModel, ModelTuning], LocalBackend]] = {
    cls.backend: cls for cls in (Qwen3Backend, SeqClsBackend, BiEncoderBackend)
}


def create_scorer(model: ModelConfig, tuning: TuningConfig | None = None) -> Scorer:
    """Raises ModelLoadError (naming the model) when it cannot be found or recognised."""
    tuning = tuning or TuningConfig()
    resolved = resolve_model(model)
    if resolved.backend == "remote":
        return RemoteScorer(model, tuning.remote)
    backend = _LOCAL[resolved.backend](model, resolved, tuning.model)
    return LocalScorer(backend, model, tuning)
