"""Model files from the Hugging Face hub (or its local cache).

huggingface_hub reads ``HF_HUB_OFFLINE`` itself: offline, these calls answer from the cache
or fail, and they never touch the network. Every failure becomes a ModelLoadError that names
the model, since these run at start-up and an operator has to act on them. A hub that could
not be reached (DNS, connection refused, a proxy) is said to be that, not taken for a model
without the file: huggingface_hub raises the same ``EntryNotFoundError`` family for both.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

from sidecar.errors import ModelLoadError

log = logging.getLogger("sidecar.models")

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
    """None when the repo has no such file (offline: when the cache does not hold it).

    Online, huggingface_hub raises LocalEntryNotFoundError when it could not ask the hub
    and the cache has no copy: that is a network failure, raised as one."""
    try:
        return Path(hf_hub_download(repo_id, filename))
    except LocalEntryNotFoundError as exc:
        if hub_offline():
            return None
        raise _unreachable(repo_id, filename, exc) from exc
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
    except LocalEntryNotFoundError as exc:
        if hub_offline():
            raise ModelLoadError(
                f"model {repo_id!r}: not in the local Hugging Face cache (HF_HUB_OFFLINE is set)"
            ) from exc
        raise _unreachable(repo_id, "its files", exc) from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"model {repo_id!r}: cannot download it from the Hugging Face hub or find it in "
            f"its cache ({type(exc).__name__}); check the name, the network or HF_HUB_OFFLINE"
        ) from exc


def _unreachable(repo_id: str, what: str, exc: LocalEntryNotFoundError) -> ModelLoadError:
    """The hub could not be reached and the cache has no copy: what the operator can fix."""
    cause = exc.__cause__ or exc.__context__ or exc
    log.error(
        "model %r: the Hugging Face hub at %s could not be reached for %s: %s",
        repo_id,
        constants.ENDPOINT,
        what,
        cause,
    )
    return ModelLoadError(
        f"model {repo_id!r}: the Hugging Face hub ({constants.ENDPOINT}) could not be reached "
        f"({type(cause).__name__}) and the local cache has no copy of {what}; check the "
        "network or proxy (HTTPS_PROXY), or fill the cache and set HF_HUB_OFFLINE=1"
    )


def hub_offline() -> bool:
    return bool(constants.HF_HUB_OFFLINE)
