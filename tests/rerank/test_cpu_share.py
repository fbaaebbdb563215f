"""CpuShare: while the loop is busy and others search, one client's rerank-path CPU is held
to a share of a core (a debt paid back at that rate); a client alone, or on a loop that is
not busy, is never held back."""

from __future__ import annotations

import time

import pytest

from sidecar.rerank.cpu_share import CONTENDED, MAX_DEBT_S, CpuShare


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _steady(share: CpuShare, clock: Clock, client: str, cores: float, seconds: float) -> None:
    """``client`` uses ``cores`` of the loop for ``seconds``, in 10 ms requests."""
    step = 0.01
    for _ in range(round(seconds / step)):
        clock.now += step
        share.charge(client, cores * step)


def test_a_client_alone_is_never_held_back() -> None:
    clock = Clock()
    share = CpuShare(0.1, clock=clock)
    _steady(share, clock, "frontend", 1.0, 10.0)
    assert share.busy() == pytest.approx(1.0, rel=0.05)
    assert share.delay("frontend") == 0.0


def test_a_loop_that_is_not_busy_holds_no_one() -> None:
    clock = Clock()
    share = CpuShare(0.1, clock=clock)
    share.charge("health-check", 0.001)
    # One frontend for all its users, at twice the share but under CONTENDED.
    _steady(share, clock, "frontend", 0.2, 10.0)
    assert share.busy() < CONTENDED
    assert share.delay("frontend") == 0.0


def test_on_a_busy_loop_a_client_past_its_share_waits_for_its_debt() -> None:
    clock = Clock()
    share = CpuShare(0.5, tolerance_s=1.0, clock=clock)
    share.charge("ordinary", 0.001)
    # A whole core at a share of half of one: once the loop is busy (about a second), the
    # debt grows by a second every second.
    _steady(share, clock, "heavy", 1.0, 4.0)
    assert share.busy() >= CONTENDED
    owed = share.delay("heavy")
    assert 0.5 < owed < 3.0
    assert share.delay("ordinary") == 0.0, "one client's debt is its own"
    clock.now += 0.4
    assert share.delay("heavy") == pytest.approx(owed - 0.4), "paid back as time passes"
    clock.now += owed
    assert share.delay("heavy") == 0.0


def test_a_debt_runs_at_most_max_debt_ahead() -> None:
    clock = Clock()
    share = CpuShare(0.01, tolerance_s=1.0, clock=clock)
    share.charge("ordinary", 0.001)
    _steady(share, clock, "heavy", 1.0, 3.0)  # 300 s owed at a hundredth of a core
    assert share.delay("heavy") == pytest.approx(MAX_DEBT_S)
    clock.now += MAX_DEBT_S + share.tolerance_s
    assert share.delay("heavy") == 0.0, "a burst that is over holds no one back for long"


def test_debt_run_up_alone_is_not_owed_once_others_arrive() -> None:
    clock = Clock()
    share = CpuShare(0.1, clock=clock)
    _steady(share, clock, "heavy", 1.0, 3.0)
    share.charge("ordinary", 0.001)
    assert share.delay("heavy") == 0.0


def test_others_stop_counting_once_they_are_quiet() -> None:
    clock = Clock()
    share = CpuShare(0.1, active_s=10.0, clock=clock)
    share.charge("ordinary", 0.001)
    _steady(share, clock, "heavy", 1.0, 4.0)
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
    share = CpuShare(0.1)
    with share.metered("heavy"):
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
    # At least the 20 ms of CPU spent in the stretch was charged.
    spent, _ = share._total
    assert spent >= 0.02
