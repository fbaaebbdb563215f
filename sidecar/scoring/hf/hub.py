"""Model files from the Hugging Face hub (or its local cache).

huggingface_hub reads ``HF_HUB_OFFLINE`` itself: offline, these calls answer from the cache
or fail, and they never touch the network. Every failure becomes a ModelLoadError that names
the model, since these run at start-up and an operator has to act on them.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError

from sidecar.errors import ModelLoadError

#: Files a local backend needs; repos often also hold ONNX/OpenVINO/GGUF exports we skip.
_NEEDED = [
    "*.json",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "*.safetensors",
    "1_Pooling/*",
]


def hub_file_or_none(repo_id: str, filename: str) -> Path | None:
    """None when the repo has no such file (offline: when the cache does not hold it)."""
    try:
        return Path(hf_hub_download(repo_id, filename))
    except EntryNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"model {repo_id!r}: cannot get {filename} from the Hugging Face hub or its cache "
            f"({type(exc).__name__})"
        ) from exc


def hub_snapshot(repo_id: str) -> Path:
    """A local directory with the model's config, tokenizer and safetensors weights."""
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_NEEDED))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"model {repo_id!r}: cannot download it from the Hugging Face hub or find it in "
            f"its cache ({type(exc).__name__}); check the name, the network or HF_HUB_OFFLINE"
        ) from exc


def hub_offline() -> bool:
    return bool(constants.HF_HUB_OFFLINE)
