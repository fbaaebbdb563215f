"""CPU time from Linux's /proc, read without torch or anything else heavy (devtools' load
tools use it too)."""

from __future__ import annotations


def stat_cpu_ticks(path: str) -> int:
    """utime + stime, in clock ticks, of a /proc ``stat`` file (a process's or a
    thread's): the fields after the command's closing paren."""
    with open(path, encoding="ascii", errors="replace") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])
