"""AsyncBreaker driven by a fake clock: closed → open → half-open → closed, without sleeping."""

from __future__ import annotations

import pytest

from sidecar.admission.breaker import AsyncBreaker
from sidecar.errors import BreakerOpen


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _breaker(fail_max: int = 3, reset_timeout_s: float = 30.0) -> tuple[AsyncBreaker, FakeClock]:
    clock = FakeClock()
    return AsyncBreaker(fail_max, reset_timeout_s, clock=clock), clock


def state(breaker: AsyncBreaker) -> str:
    """Read through a call, so that mypy does not narrow the property between asserts."""
    return breaker.state


def _fail(breaker: AsyncBreaker, times: int) -> None:
    for _ in range(times):
        breaker.acquire()
        breaker.failure()


def test_opens_after_fail_max_consecutive_failures() -> None:
    breaker, _ = _breaker(fail_max=3)
    _fail(breaker, 2)
    assert (state(breaker), breaker.fail_counter) == ("closed", 2)
    _fail(breaker, 1)
    assert (state(breaker), breaker.fail_counter) == ("open", 3)
    assert breaker.reset_timeout_s == 30.0


def test_a_success_resets_the_failure_count() -> None:
    breaker, _ = _breaker(fail_max=3)
    _fail(breaker, 2)
    breaker.acquire()
    breaker.success()
    assert (state(breaker), breaker.fail_counter) == ("closed", 0)
    _fail(breaker, 2)
    assert state(breaker) == "closed"


def test_open_rejects_until_the_reset_timeout_elapses() -> None:
    breaker, clock = _breaker(fail_max=1, reset_timeout_s=30.0)
    _fail(breaker, 1)
    with pytest.raises(BreakerOpen) as exc:
        breaker.acquire()
    assert exc.value.reason == "breaker_open"
    clock.advance(29.9)
    with pytest.raises(BreakerOpen):
        breaker.acquire()
    assert state(breaker) == "open"
    clock.advance(0.1)
    breaker.acquire()  # the trial
    assert state(breaker) == "half-open"


def test_half_open_lets_exactly_one_trial_through() -> None:
    breaker, clock = _breaker(fail_max=1, reset_timeout_s=5.0)
    _fail(breaker, 1)
    clock.advance(5.0)
    breaker.acquire()
    with pytest.raises(BreakerOpen, match="trial in flight"):
        breaker.acquire()


def test_a_successful_trial_closes() -> None:
    breaker, clock = _breaker(fail_max=2, reset_timeout_s=5.0)
    _fail(breaker, 2)
    clock.advance(5.0)
    breaker.acquire()
    breaker.success()
    assert (state(breaker), breaker.fail_counter) == ("closed", 0)
    breaker.acquire()
    breaker.acquire()  # closed: no trial slot, any number of calls
    breaker.success()
    breaker.success()
    assert state(breaker) == "closed"


def test_a_failed_trial_reopens_for_another_full_timeout() -> None:
    breaker, clock = _breaker(fail_max=2, reset_timeout_s=5.0)
    _fail(breaker, 2)
    clock.advance(5.0)
    breaker.acquire()
    clock.advance(3.0)  # the trial itself took a while
    breaker.failure()
    assert state(breaker) == "open"
    # The timeout counts from the failed trial, not from the first opening.
    clock.advance(4.9)
    with pytest.raises(BreakerOpen):
        breaker.acquire()
    clock.advance(0.1)
    breaker.acquire()
    assert state(breaker) == "half-open"


def test_release_is_not_a_verdict() -> None:
    breaker, clock = _breaker(fail_max=2, reset_timeout_s=5.0)
    for _ in range(5):
        breaker.acquire()
        breaker.release()
    assert (state(breaker), breaker.fail_counter) == ("closed", 0)
    _fail(breaker, 2)
    clock.advance(5.0)
    breaker.acquire()
    breaker.release()  # the trial's client went away: still half-open, slot free again
    assert state(breaker) == "half-open"
    breaker.acquire()
    breaker.success()
    assert state(breaker) == "closed"


def test_late_verdicts_while_open_are_ignored() -> None:
    """Calls that started while closed may finish after the breaker opened."""
    breaker, clock = _breaker(fail_max=2, reset_timeout_s=5.0)
    for _ in range(3):
        breaker.acquire()
    breaker.failure()
    breaker.failure()
    assert state(breaker) == "open"
    clock.advance(1.0)
    breaker.success()  # the third call, late: neither closes nor raises
    breaker.failure()
    assert (state(breaker), breaker.fail_counter) == ("open", 2)
    clock.advance(4.0)  # a late failure did not restart the timeout
    breaker.acquire()
    assert state(breaker) == "half-open"


def test_force_open_and_reset() -> None:
    breaker, clock = _breaker(fail_max=3, reset_timeout_s=10.0)
    clock.advance(100.0)
    breaker.force_open()
    assert state(breaker) == "open"
    with pytest.raises(BreakerOpen):
        breaker.acquire()
    clock.advance(10.0)
    breaker.acquire()
    assert state(breaker) == "half-open"
    breaker.reset()
    assert (state(breaker), breaker.fail_counter) == ("closed", 0)
    breaker.acquire()
    breaker.acquire()
