"""A circuit breaker around the model, driven from asyncio.

State and counters live in a :class:`pybreaker.CircuitBreaker` (so listeners, ``fail_max``,
``reset_timeout`` and the admin's force-open/reset mean what pybreaker says they mean). We do
not use ``call_async``: it runs on Tornado. Instead the rerank path asks :meth:`acquire`
before calling the model and reports the outcome with :meth:`success`, :meth:`failure` or
:meth:`release` (the client went away: neither a success nor a failure). Half-open lets
exactly one trial request through at a time.

Time is ours, not pybreaker's: pybreaker decides "has the reset timeout elapsed" with
``datetime.now`` inside its open state, and takes no clock. So the open → half-open move is
decided here, with an injected ``clock`` (``time.monotonic`` by default; tests pass a fake
one), and pybreaker is never called while it is open: a verdict that arrives then is from a
call that started before the breaker opened, and is ignored (the half-open trial decides).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Literal

import pybreaker

from sidecar.errors import BreakerOpen

StateName = Literal["closed", "open", "half-open"]
Clock = Callable[[], float]


class _OpenedAt(pybreaker.CircuitBreakerListener):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.opened_at = 0.0

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        if new_state is not None and new_state.name == pybreaker.STATE_OPEN:
            self.opened_at = self.clock()


def _succeed() -> None:
    return None


def _fail(exc: BaseException) -> None:
    raise exc


class _ModelFailed(Exception):
    pass


class AsyncBreaker:
    def __init__(
        self,
        fail_max: int,
        reset_timeout_s: float,
        name: str = "model",
        clock: Clock = time.monotonic,
    ) -> None:
        self._opened = _OpenedAt(clock)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            listeners=[self._opened],
            name=name,
            throw_new_error_on_trip=False,
        )
        self._trial_in_flight = False

    @property
    def state(self) -> StateName:
        """The state as a caller would find it now: an open breaker whose reset timeout
        has passed lets the next call through as a trial, so it says ``half-open``."""
        state = self._cb.current_state
        if state == pybreaker.STATE_OPEN and self._timed_out():
            return "half-open"
        return "half-open" if state == pybreaker.STATE_HALF_OPEN else state  # type: ignore[return-value]

    def _timed_out(self) -> bool:
        return self._opened.clock() - self._opened.opened_at >= self._cb.reset_timeout

    @property
    def fail_counter(self) -> int:
        return int(self._cb.fail_counter)

    @property
    def reset_timeout_s(self) -> float:
        return float(self._cb.reset_timeout)

    def acquire(self) -> None:
        """Raise BreakerOpen unless a model call may go ahead now."""
        state = self._cb.current_state
        if state == pybreaker.STATE_OPEN:
            if not self._timed_out():
                raise BreakerOpen("circuit breaker open")
            self._cb.half_open()
            state = pybreaker.STATE_HALF_OPEN
        if state == pybreaker.STATE_HALF_OPEN:
            if self._trial_in_flight:
                raise BreakerOpen("circuit breaker half-open, trial in flight")
            self._trial_in_flight = True

    def success(self) -> None:
        self._trial_in_flight = False
        if self._cb.current_state != pybreaker.STATE_OPEN:
            self._cb.call(_succeed)

    def failure(self) -> None:
        self._trial_in_flight = False
        if self._cb.current_state != pybreaker.STATE_OPEN:
            with contextlib.suppress(_ModelFailed, pybreaker.CircuitBreakerError):
                self._cb.call(_fail, _ModelFailed())

    def release(self) -> None:
        """The caller gave up (client disconnect): not a verdict on the model."""
        self._trial_in_flight = False

    def force_open(self) -> None:
        self._cb.open()
        self._opened.opened_at = self._opened.clock()

    def reset(self) -> None:
        self._trial_in_flight = False
        self._cb.close()
