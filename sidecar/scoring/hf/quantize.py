"""The optional CPU speed-up: dynamic int8 quantization of a model's linear layers.

``model.cpu_quantization: dynamic_int8`` swaps every ``nn.Linear`` of a model that runs on the
CPU for a dynamically quantized one (``torch.ao.quantization.quantize_dynamic``): weights are
stored as int8 once (symmetric, one scale per output channel, which keeps noticeably more of
the ranking than one scale per matrix), activations are quantized per call, and the matrix
products run on the CPU's int8 units (VNNI/AMX where present). Embeddings, layer norms,
softmax and the attention products stay fp32.

It is applied by the cross-encoder (``seqcls``) and bi-encoder backends. It is a CPU feature:
on a GPU it is not applied (logged, and reported as such in the model info). What it costs
in ranking quality and what it gains in speed is measured by ``python -m es_integration eval
--cpu-quantization none dynamic_int8`` and ``python -m es_integration bench``
(docs/benchmarks.md).

The quantized kernels come from one of torch's quantized engines. Which one is fastest
depends on the CPU (oneDNN uses AMX on recent Xeons; fbgemm/x86 is the portable choice), so
the engines this torch offers are timed once on a layer of the model's own shape and the
fastest is used; the packed weights keep the engine they were made with.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Literal, cast

import torch

log = logging.getLogger("sidecar.models")

CpuQuantization = Literal["none", "dynamic_int8"]

#: Engines tried, in order of preference when they time the same.
_ENGINES = ("onednn", "x86", "fbgemm")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # torch marks the eager-mode quantization API deprecated (in favour of torchao, which is
    # not a dependency); the API is present and works in the pinned torch.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


@contextlib.contextmanager
def _engine(name: str) -> Iterator[None]:
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def _quantize(module: torch.nn.Module, engine: str) -> torch.nn.Module:
    with _quiet(), _engine(engine):
        from torch.ao import quantization

        quantize_dynamic = cast(Callable[..., torch.nn.Module], quantization.quantize_dynamic)
        spec = {torch.nn.Linear: quantization.per_channel_dynamic_qconfig}
        return quantize_dynamic(module, spec, dtype=torch.qint8, inplace=False)


def _largest_linear(model: torch.nn.Module) -> torch.nn.Linear | None:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return max(linears, key=lambda m: m.weight.numel(), default=None)


def _time_engine(layer: torch.nn.Linear, engine: str, rows: int = 2048) -> float:
    """Seconds per call of ``layer`` quantized with ``engine`` (best of a few)."""
    linear = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(layer.weight.detach().float().cpu())
    quantized = _quantize(torch.nn.Sequential(linear).eval(), engine)
    x = torch.randn(rows, layer.in_features)
    best = float("inf")
    with torch.inference_mode():
        quantized(x)
        for _ in range(5):
            started = time.perf_counter()
            quantized(x)
            best = min(best, time.perf_counter() - started)
    return best


def choose_engine(model: torch.nn.Module) -> str:
    """The fastest quantized engine of this torch build for this model, on this CPU."""
    supported = [e for e in _ENGINES if e in torch.backends.quantized.supported_engines]
    if not supported:
        raise RuntimeError("this torch build has no quantized CPU engine")
    layer = _largest_linear(model)
    if layer is None or len(supported) == 1:
        return supported[0]
    timings: dict[str, float] = {}
    for engine in supported:
        try:
            timings[engine] = _time_engine(layer, engine)
        except RuntimeError as exc:  # an engine this CPU cannot run
            log.info("quantized engine %s unavailable: %s", engine, exc)
    if not timings:
        return supported[0]
    # Within 5% counts as a tie, settled by the preference order.
    fastest = min(timings.values())
    return next(e for e in supported if e in timings and timings[e] <= fastest * 1.05)


def quantize_for_cpu(
    model: torch.nn.Module,
    mode: CpuQuantization,
    device: torch.device,
    *,
    engine: str | None = None,
) -> tuple[torch.nn.Module, str]:
    """``model`` with ``mode`` applied, and a short description for the model info.

    ``none`` and non-CPU devices return the model unchanged.
    """
    if mode == "none":
        return model, "none"
    if device.type != "cpu":
        log.warning("model.cpu_quantization=%s applies on the CPU only; %s is used", mode, device)
        return model, f"none ({mode} is CPU-only)"
    model = model.float()
    engine = engine or choose_engine(model)
    quantized = _quantize(model, engine).eval()
    return quantized, f"{mode} ({engine})"
