"""LoopShare: while the loop is busy and others search, one client's rerank-path CPU is held
to a share of a core (a debt paid back at that rate); a client alone, or on a loop that is
not busy, is never held back."""

from __future__ import annotations

import time

import pytest

from sidecar.admission.ledger import ClientLedger
from sidecar.admission.loop import ACTIVE_S, CONTENDED, MAX_DEBT_S, TOLERANCE_S, LoopShare
from sidecar.deadline import Deadline
from sidecar.procstat import LoopClock


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def share_of(share: float = 0.1) -> tuple[LoopShare, Clock]:
    clock = Clock()
    return LoopShare(ClientLedger(clock=clock), LoopClock(), share=share), clock


def steady(share: LoopShare, clock: Clock, client: str, cores: float, seconds: float) -> None:
    """``client`` uses ``cores`` of the loop for ``seconds``, in 10 ms requests."""
    step = 0.01
    for _ in range(round(seconds / step)):
        clock.now += step
        share.charge(client, cores * step)


def test_a_client_alone_is_never_held_back() -> None:
    share, clock = share_of()
    steady(share, clock, "frontend", 1.0, 20.0)
    assert share.busy() == pytest.approx(1.0, rel=0.1)
    assert share.owed("frontend") == 0.0


def test_a_loop_that_is_not_busy_holds_no_one() -> None:
    share, clock = share_of()
    share.charge("health-check", 0.001)
    # One frontend for all its users, at twice the share but under CONTENDED.
    steady(share, clock, "frontend", 0.2, 10.0)
    assert share.busy() < CONTENDED
    assert share.owed("frontend") == 0.0


def test_on_a_busy_loop_a_client_past_its_share_waits_for_its_debt() -> None:
    share, clock = share_of(0.5)
    share.charge("ordinary", 0.001)
    # A whole core at a share of half of one: once the loop is busy, the debt grows by a
    # second every second.
    steady(share, clock, "heavy", 1.0, 4.0)
    assert share.busy() >= CONTENDED
    owed = share.owed("heavy")
    assert 0.5 < owed < 4.0
    assert share.owed("ordinary") == 0.0, "one client's debt is its own"
    clock.now += 0.4
    assert share.owed("heavy") == pytest.approx(owed - 0.4), "paid back as time passes"
    clock.now += owed
    assert share.owed("heavy") == 0.0


def test_a_debt_runs_at_most_max_debt_ahead() -> None:
    share, clock = share_of(0.01)
    share.charge("ordinary", 0.001)
    steady(share, clock, "heavy", 1.0, 3.0)  # 300 s owed at a hundredth of a core
    assert share.owed("heavy") == pytest.approx(MAX_DEBT_S)
    clock.now += MAX_DEBT_S + TOLERANCE_S
    assert share.owed("heavy") == 0.0, "a burst that is over holds no one back for long"


def test_debt_run_up_alone_is_not_owed_once_others_arrive() -> None:
    share, clock = share_of()
    steady(share, clock, "heavy", 1.0, 3.0)
    share.charge("ordinary", 0.001)
    assert share.owed("heavy") == 0.0


def test_others_stop_counting_once_they_are_quiet() -> None:
    share, clock = share_of()
    share.charge("ordinary", 0.001)
    steady(share, clock, "heavy", 1.0, 4.0)
    assert share.owed("heavy") > 0
    clock.now += ACTIVE_S + 0.5  # the ordinary client went quiet: the heavy one is alone
    assert share.owed("heavy") == 0.0


async def test_a_hold_comes_off_the_deadline_and_says_when_it_took_all_of_it() -> None:
    share, clock = share_of()
    assert await share.hold("nobody", Deadline(1.0)) is False
    share.charge("ordinary", 0.001)
    steady(share, clock, "heavy", 1.0, 3.0)
    # Owing more than the deadline leaves: the whole of it, and no sleep is needed to know.
    deadline = Deadline(0.0)
    assert await share.hold("heavy", deadline) is True


def test_metered_charges_the_loop_cpu_of_the_stretch() -> None:
    share, _ = share_of()
    before = share.busy()
    with share.metered("heavy"):
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
    assert share.busy() > before
    assert "heavy" in share.ledger
