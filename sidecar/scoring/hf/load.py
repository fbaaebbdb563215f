"""Loading transformers tokenizers and models, with failures translated for the operator.

ModelLoadError messages may be shown by the readiness endpoint, so they name the model, the
path and the exception class only; the library's own message goes to the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from sidecar.errors import ModelLoadError

log = logging.getLogger("sidecar.models")

#: Tokenizers without a length limit report a huge sentinel rather than None.
_NO_LIMIT = 1_000_000


def read_json(path: Path, *, model: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {model!r}: cannot read {path} ({type(exc).__name__})") from exc


def load_tokenizer(path: Path, *, model: str, **kwargs: Any) -> PreTrainedTokenizerBase:
    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        log.error("loading the tokenizer of %r from %s failed: %s", model, path, exc)
        raise ModelLoadError(
            f"model {model!r}: cannot load its tokenizer from {path} ({type(exc).__name__})"
        ) from exc
    if not tokenizer.is_fast:
        # encode() runs in a thread pool and relies on the Rust tokenizer releasing the GIL.
        raise ModelLoadError(f"model {model!r}: a fast (Rust) tokenizer is required")
    return tokenizer


def load_weights(
    from_pretrained: Callable[..., object],
    path: Path,
    *,
    model: str,
    device: torch.device,
    dtype: torch.dtype,
    **kwargs: Any,
) -> torch.nn.Module:
    try:
        module = from_pretrained(str(path), dtype=dtype, **kwargs)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"{type(module).__name__} is not a torch module")
        return module.to(device).eval()
    except (OSError, ValueError, KeyError, ImportError, TypeError, RuntimeError) as exc:
        # RuntimeError covers shape mismatches and CUDA out-of-memory while moving weights.
        log.error("loading the weights of %r from %s failed: %s", model, path, exc)
        raise ModelLoadError(
            f"model {model!r}: cannot load its weights from {path} onto {device} "
            f"({type(exc).__name__})"
        ) from exc


def tokenizer_limit(tokenizer: PreTrainedTokenizerBase) -> int | None:
    limit = tokenizer.model_max_length
    return limit if isinstance(limit, int) and 0 < limit < _NO_LIMIT else None
