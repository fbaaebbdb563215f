"""Figures of a process from Linux's /proc: resident memory and CPU time."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from sidecar.procstat import stat_cpu_ticks


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far, or None when it cannot be read."""
    if pid is None:
        return None
    try:
        return stat_cpu_ticks(f"/proc/{pid}/stat") / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
