"""CpuShare: while others search, one client's rerank-path CPU is held to a share of a
core (a debt paid back at that rate); a client alone is never held back."""

from __future__ import annotations

import time

import pytest

from sidecar.rerank.cpu_share import CpuShare


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_client_alone_is_never_held_back() -> None:
    clock = Clock()
    share = CpuShare(0.1, clock=clock)
    for _ in range(100):
        share.charge("frontend", 0.05)  # 5 s of debt at a tenth of a core, were it owed
    assert share.delay("frontend") == 0.0


def test_past_the_tolerance_a_client_waits_for_its_debt() -> None:
    clock = Clock()
    share = CpuShare(0.1, tolerance_s=1.0, clock=clock)
    share.charge("ordinary", 0.001)
    for _ in range(20):
        share.charge("heavy", 0.01)  # 0.2 s of CPU: 2 s of debt at 0.1 of a core
    assert share.delay("heavy") == pytest.approx(2.0 - 1.0)
    assert share.delay("ordinary") == 0.0, "one client's debt is its own"
    clock.now += 0.4
    assert share.delay("heavy") == pytest.approx(0.6), "the debt is paid back as time passes"
    clock.now += 5.0
    assert share.delay("heavy") == 0.0


def test_debt_run_up_alone_is_not_owed_once_others_arrive() -> None:
    clock = Clock()
    share = CpuShare(0.1, clock=clock)
    for _ in range(100):
        share.charge("heavy", 0.05)
    share.charge("ordinary", 0.001)
    assert share.delay("heavy") == 0.0
    share.charge("heavy", 0.3)  # now others are searching: 3 s of debt
    assert share.delay("heavy") == pytest.approx(3.0 - share.tolerance_s)


def test_others_stop_counting_once_they_are_quiet() -> None:
    clock = Clock()
    share = CpuShare(0.1, active_s=10.0, clock=clock)
    share.charge("ordinary", 0.001)
    share.charge("heavy", 0.5)
    assert share.delay("heavy") > 0
    clock.now += 10.5  # the ordinary client went quiet: the heavy one is alone
    assert share.delay("heavy") == 0.0


def test_clients_are_bounded() -> None:
    clock = Clock()
    share = CpuShare(0.1, max_clients=50, clock=clock)
    for n in range(80):
        share.charge(f"10.0.0.{n}", 0.001)
    assert len(share._clients) == 50
    assert "10.0.0.0" not in share._clients, "the longest quiet was forgotten"


def test_metered_charges_the_thread_cpu_of_the_stretch() -> None:
    clock = Clock()
    share = CpuShare(0.01, tolerance_s=0.0, clock=clock)
    share.charge("ordinary", 0.0)
    with share.metered("heavy"):
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
    # At least 20 ms of CPU at a hundredth of a core: at least 2 s owed.
    assert share.delay("heavy") >= 2.0
