"""What the benchmarks and the evaluation ran on, as measured on this machine at run time.

Every figure comes from the system (``/proc``, ``os``, ``platform``, torch), never from what
one machine was once known to be, so a report generated elsewhere describes elsewhere.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path

#: CPU features that decide which kernels torch can use; listed when the CPU has them.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() not in info:
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in ISA_FLAGS if f in flags]


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except (OSError, ValueError):
        pass
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def accelerators() -> str:
    try:
        import torch
    except ImportError:
        return "torch not installed"
    if not torch.cuda.is_available():
        return "no CUDA device visible"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return "CUDA: " + ", ".join(names)


def machine_description() -> str:
    mem = memory_gib()
    flags = cpu_flags()
    parts = [
        f"{cpu_model()}, {usable_cores()} cores usable",
        f"CPU flags {' '.join(flags)}" if flags else "",
        f"{mem:.0f} GiB RAM" if mem else "",
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}",
        f"torch {_version('torch')}",
        accelerators(),
    ]
    return "; ".join(p for p in parts if p)


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def now_text(ts: float | None = None) -> str:
    stamp = dt.datetime.fromtimestamp(ts, dt.UTC) if ts else dt.datetime.now(dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")
