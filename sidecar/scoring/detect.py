"""Which backend serves a configured model, decided from the model's own files.

* an http(s) URL -> ``remote``;
* ``config.json`` whose architectures include a ``*ForCausalLM`` -> ``qwen3`` (the Qwen3
  reranker family scores with the LM head's "yes"/"no" logits);
* ``*ForSequenceClassification`` -> ``seqcls`` (cross-encoders);
* a sentence-transformers layout (``modules.json``) -> ``biencoder``.

The files come from a local directory, the bundled package, or the Hugging Face hub/cache
(config files only: weights are fetched by ``start()``, not here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sidecar.config import Backend, ModelConfig
from sidecar.errors import ModelConfigError, ModelLoadError
from sidecar.scoring.base import ResolvedModel
from sidecar.scoring.bundled import bundled_path
from sidecar.scoring.hf.hub import hub_file_or_none, hub_offline
from sidecar.scoring.hf.load import read_json


def is_url(name: str) -> bool:
    return name.startswith(("http://", "https://"))


def validate_model(config: ModelConfig) -> None:
    """Raise ModelConfigError for a model configuration that cannot work whatever the
    environment does; everything else (files, hub, weights) is found out by loading."""
    name = config.name
    if is_url(name) and config.backend not in ("auto", "remote"):
        raise ModelConfigError(
            f"config error: model.backend: {config.backend!r} cannot serve {name!r}, "
            "a URL, which only the remote backend serves"
        )
    if not is_url(name) and config.backend == "remote":
        raise ModelConfigError(
            f"config error: model.backend: 'remote', but {name!r} is not an http(s) URL"
        )


def resolve_model(config: ModelConfig) -> ResolvedModel:
    validate_model(config)
    name = config.name
    if is_url(name):
        return ResolvedModel(name, "remote", None)
    packaged = bundled_path(name)
    directory = packaged or _local_directory(name)
    if config.backend != "auto":
        backend: Backend = config.backend
    elif directory is not None:
        backend = _detect_directory(name, directory)
    else:
        backend = _detect_hub(name)
    return ResolvedModel(name, backend, directory, bundled=packaged is not None)


def _local_directory(name: str) -> Path | None:
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        # Not an HF id (those are "name" or "owner/name"), so it was meant as a path.
        raise ModelLoadError(f"model directory {name!r} does not exist")
    return None


def backend_from_architectures(architectures: list[str]) -> Backend | None:
    if any(arch.endswith("ForCausalLM") for arch in architectures):
        return "qwen3"
    if any(arch.endswith("ForSequenceClassification") for arch in architectures):
        return "seqcls"
    return None


def _architectures(config: Any) -> list[str]:
    found = config.get("architectures") if isinstance(config, dict) else None
    return [a for a in found if isinstance(a, str)] if isinstance(found, list) else []


def _detect_directory(name: str, directory: Path) -> Backend:
    architectures: list[str] = []
    if (directory / "config.json").is_file():
        architectures = _architectures(read_json(directory / "config.json", model=name))
        found = backend_from_architectures(architectures)
        if found is not None:
            return found
    if (directory / "modules.json").is_file():
        return "biencoder"
    raise ModelLoadError(
        f"model {name!r}: cannot tell its backend from {directory} (architectures "
        f"{architectures or 'unknown'}, no modules.json); set model.backend"
    )


def _detect_hub(name: str) -> Backend:
    architectures: list[str] = []
    config_path = hub_file_or_none(name, "config.json")
    if config_path is not None:
        architectures = _architectures(read_json(config_path, model=name))
        found = backend_from_architectures(architectures)
        if found is not None:
            return found
    if hub_file_or_none(name, "modules.json") is not None:
        return "biencoder"
    if config_path is None:
        where = (
            "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if hub_offline() else "the hub"
        )
        raise ModelLoadError(f"model {name!r}: no config.json or modules.json in {where}")
    raise ModelLoadError(
        f"model {name!r}: cannot tell its backend (architectures {architectures or 'unknown'}, "
        f"no modules.json); set model.backend"
    )
