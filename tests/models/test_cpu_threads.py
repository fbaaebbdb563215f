"""CpuThreads: a CPU model's passes use the cores that other work leaves free."""

from __future__ import annotations

import os

import pytest

from sidecar.procstat import LoopClock
from sidecar.scoring.local.threads import CpuThreads, Sample, adaptive, proc_reader, threads_for


def test_threads_for_leaves_the_cores_other_work_takes() -> None:
    assert threads_for(2, 2, 0.0) == 2
    assert threads_for(2, 2, 0.1) == 2, "a little other work keeps every thread"
    assert threads_for(2, 2, 0.4) == 1
    assert threads_for(2, 2, 5.0) == 1, "never fewer than one"
    assert threads_for(16, 8, 2.0) == 8, "never more than the limit"
    assert threads_for(16, 16, 3.5) == 12


class Machine:
    """A /proc stand-in: CPU seconds that the test advances."""

    def __init__(self) -> None:
        self.now = 0.0
        self.machine = self.process = self.main = 0.0
        self.readable = True

    def read(self) -> Sample | None:
        return Sample(self.machine, self.process, self.main) if self.readable else None

    def run(self, seconds: float, model_cores: float, other_cores: float, loop: float) -> None:
        """``seconds`` pass with the model on ``model_cores``, other processes on
        ``other_cores`` and this process's event loop on ``loop`` cores."""
        self.now += seconds
        self.process += seconds * (model_cores + loop)
        self.main += seconds * loop
        self.machine += seconds * (model_cores + loop + other_cores)


def passes(threads: CpuThreads, machine: Machine, n: int, other: float, loop: float) -> None:
    for _ in range(n):
        threads.before_pass()
        machine.run(0.1, threads.current, other, loop)
        threads.after_pass()


def test_a_busy_neighbour_takes_a_thread_and_gives_it_back() -> None:
    machine = Machine()
    applied: list[int] = []
    threads = CpuThreads(machine.read, 2, 2, apply=applied.append, clock=lambda: machine.now)
    passes(threads, machine, 10, other=0.0, loop=0.0)
    assert threads.current == 2 and not applied
    passes(threads, machine, 10, other=0.7, loop=0.0)
    assert threads.current == 1 and applied == [1]
    passes(threads, machine, 20, other=0.0, loop=0.0)
    assert threads.current == 2 and applied == [1, 2]


def test_the_event_loop_counts_as_other_work() -> None:
    machine = Machine()
    threads = CpuThreads(machine.read, 2, 2, apply=lambda n: None, clock=lambda: machine.now)
    passes(threads, machine, 10, other=0.0, loop=0.6)
    assert threads.current == 1
    assert threads.other_cores == pytest.approx(0.6)


def test_work_between_passes_does_not_count() -> None:
    machine = Machine()
    threads = CpuThreads(machine.read, 2, 2, apply=lambda n: None, clock=lambda: machine.now)
    for _ in range(10):
        machine.run(0.5, 0.0, 1.0, 0.0)  # ES answers a search while the model is idle
        threads.before_pass()
        machine.run(0.1, threads.current, 0.0, 0.0)
        threads.after_pass()
    assert threads.current == 2


def test_unreadable_proc_keeps_the_count() -> None:
    machine = Machine()
    machine.readable = False
    threads = CpuThreads(machine.read, 2, 2, apply=lambda n: None, clock=lambda: machine.now)
    passes(threads, machine, 5, other=1.0, loop=0.0)
    assert threads.current == 2


def test_the_proc_reader_reads_this_machine() -> None:
    threads = adaptive(LoopClock(), limit=1)
    assert threads is not None
    assert threads.cores == len(os.sched_getaffinity(0))
    read = proc_reader(os.sched_getaffinity(0), LoopClock())  # this thread stands for the loop
    assert read is not None
    sample = read()
    assert sample is not None
    assert sample.machine_s >= sample.process_s >= sample.loop_s > 0
