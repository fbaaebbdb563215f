"""How many threads a CPU model's passes use: the cores that other work leaves free.

Torch's intra-op threads meet at a barrier after every operator, so a pass runs at the
pace of its slowest thread. When something else keeps part of a core busy (ES on the same
host, the sidecar's own event loop decoding answers), the pass thread that shares that core
holds the others back, and the model answers fewer pairs per second on every core than it
would on one core fewer. Measured on two cores with all-MiniLM-L6-v2: 25 ms per pair on two
threads and 41 on one when idle; beside a busy process, 52 on two and 40 on one.

So with ``tuning.model.cpu_threads: 0`` the worker measures, around each pass, the CPU that
other work used meanwhile: every process on the cores this process may run on
(``/proc/stat``) less this process, plus this process's event loop (its thread's CPU clock,
:class:`sidecar.procstat.LoopClock`, the one the loop's CPU share meters with). Work before or after
the model's (ES answering the search that the model then scores) does not count: only what
shares the CPU with it. The next pass uses the cores left over recent passes, rounded
down past :data:`SLACK` of a core, at least one and at most torch's own count. Where
``/proc`` cannot be read, or a cgroup CPU quota applies (the cores /proc shows are then
not this process's), the count stays torch's. The readers are given, so the decision is
tested without a busy machine.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sidecar.procstat import stat_cpu_ticks

#: Weight of the newest pass's measure (passes are weighed by their length too: a pass of
#: a few milliseconds is within the clock ticks of /proc).
ALPHA = 0.3
#: Other work below this much of a core does not take a thread away.
SLACK = 0.2


@dataclass(frozen=True)
class Sample:
    """CPU seconds so far: busy on this process's cores, this process, its event loop."""

    machine_s: float
    process_s: float
    loop_s: float


def threads_for(cores: int, limit: int, other_cores: float) -> int:
    """Threads for a pass when ``other_cores`` of ``cores`` are busy with other work."""
    free = cores - max(0.0, other_cores)
    return max(1, min(limit, math.floor(free + SLACK)))


class CpuThreads:
    def __init__(
        self,
        read: Callable[[], Sample | None],
        cores: int,
        limit: int,
        *,
        apply: Callable[[int], None] = torch.set_num_threads,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.cores = cores
        self.limit = limit
        self._apply = apply
        self._clock = clock
        self.current = limit
        self._start: tuple[float, Sample] | None = None
        #: Decayed (CPU seconds of other work, seconds) over recent passes.
        self._seen = (0.0, 0.0)

    @property
    def other_cores(self) -> float:
        """Cores other work kept busy while recent passes ran."""
        other, elapsed = self._seen
        return other / elapsed if elapsed > 0 else 0.0

    def before_pass(self) -> None:
        """Called by the worker thread before each pass."""
        sample = self._read()
        self._start = None if sample is None else (self._clock(), sample)

    def after_pass(self) -> None:
        """Called by the worker thread after each pass: the next one's thread count."""
        if self._start is None:
            return
        then, old = self._start
        self._start = None
        sample = self._read()
        elapsed = self._clock() - then
        if sample is None or elapsed <= 0:
            return
        other = (
            (sample.machine_s - old.machine_s)
            - (sample.process_s - old.process_s)
            + (sample.loop_s - old.loop_s)
        )
        seen_other, seen_s = self._seen
        self._seen = ((1 - ALPHA) * seen_other + other, (1 - ALPHA) * seen_s + elapsed)
        wanted = threads_for(self.cores, self.limit, self.other_cores)
        if wanted != self.current:
            self._apply(wanted)
            self.current = wanted


def proc_reader(
    cpus: set[int], loop_cpu: Callable[[], float]
) -> Callable[[], Sample | None] | None:
    """A reader of this machine's ``/proc`` for the CPUs ``cpus``, and of the event loop's
    CPU clock (None where there is no ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    names = {f"cpu{n}" for n in cpus}

    def read() -> Sample | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                busy = 0
                for line in f:
                    fields = line.split()
                    if fields and fields[0] in names:
                        # user nice system idle iowait irq softirq steal: all but idle, iowait
                        values = [int(v) for v in fields[1:9]]
                        busy += sum(values) - values[3] - values[4]
            process = stat_cpu_ticks("/proc/self/stat")
        except (OSError, ValueError, IndexError):
            return None
        return Sample(busy / tick, process / tick, loop_cpu())

    return read if read() is not None else None


def cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> bool:
    """Whether a cgroup (v2) CPU quota applies: then /proc/stat shows cores that are not
    this process's to use, and their load says nothing about its share."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read().split()[0] != "max"
    except (OSError, IndexError):
        return False


def adaptive(loop_cpu: Callable[[], float], limit: int | None = None) -> CpuThreads | None:
    """Threads that follow the free cores, from torch's count down; None without /proc
    or under a CPU quota. ``loop_cpu``: the event loop's CPU clock."""
    if cpu_quota():
        return None
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None
    read = proc_reader(cpus, loop_cpu)
    if read is None:
        return None
    return CpuThreads(read, len(cpus), limit or torch.get_num_threads())
