"""Where a local model runs and in which precision."""

from __future__ import annotations

import importlib.util

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(spec: str) -> torch.device:
    """``auto`` prefers cuda, then mps, then cpu; anything else is taken as configured."""
    if spec != "auto":
        return torch.device(spec)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    if spec != "auto":
        return _DTYPES[spec]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        # bf16 on MPS depends on the macOS version; fp16 works everywhere MPS does.
        return torch.float16
    # Half precision on CPU is emulated on most x86 parts and is slower than fp32.
    return torch.float32


def attention_implementation(device: torch.device, dtype: torch.dtype) -> str:
    """flash_attention_2 where it can run (CUDA, half precision, package present), else sdpa."""
    half = dtype in (torch.bfloat16, torch.float16)
    if device.type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def apply_cpu_threads(threads: int) -> None:
    """Torch's intra-op pool is process-wide; 0 keeps torch's own choice."""
    if threads > 0:
        torch.set_num_threads(threads)
