"""CPU time: of this process's event loop (one clock, read by whoever needs it), and from
Linux's /proc, read without torch or anything else heavy (devtools' load tools use it too).
"""

from __future__ import annotations

import threading
import time


class LoopClock:
    """CPU seconds used by one thread, readable from any thread: the event loop's, made on
    the loop's thread. The loop's CPU share (:mod:`sidecar.admission.loop`) meters stretches
    of the loop's work with it, and a CPU model's worker reads it around each pass to know
    how much of a core the loop took meanwhile (:mod:`sidecar.scoring.local.threads`)."""

    def __init__(self, ident: int | None = None) -> None:
        self._clock = time.pthread_getcpuclockid(ident or threading.get_ident())

    def __call__(self) -> float:
        return time.clock_gettime(self._clock)


def stat_cpu_ticks(path: str) -> int:
    """utime + stime, in clock ticks, of a /proc ``stat`` file (a process's or a
    thread's): the fields after the command's closing paren."""
    with open(path, encoding="ascii", errors="replace") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])
