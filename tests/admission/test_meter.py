"""ModelMeter: what the model costs, from its passes and answers, fed through one call."""

from __future__ import annotations

import pytest

from sidecar.admission.meter import ALPHA, HANG_FACTOR, MIN_HANG_S, SAFETY, ModelMeter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def passes(meter: ModelMeter, clock: Clock, *work: tuple[int, float]) -> None:
    """Serial passes of (pairs, seconds), one after the other."""
    for pairs, seconds in work:
        clock.now += seconds
        meter.observe(pairs, pairs * 64, seconds)


def test_unknown_until_the_model_works_then_learned_from_passes() -> None:
    clock = Clock()
    meter = ModelMeter(clock)
    assert meter.per_pair is None and meter.seconds_for(10) is None
    assert meter.pairs_within(1.0) == float("inf"), "an unknown cost fits everything"
    assert meter.capacity(1.5, 50, 10) is None
    passes(meter, clock, (20, 1.0))  # 50 ms a pair
    assert meter.per_pair == pytest.approx(0.05)
    assert meter.seconds_for(10) == pytest.approx(0.5 * SAFETY)
    assert meter.pairs_within(1.0 * SAFETY) == pytest.approx(20)


def test_passes_weigh_by_their_pairs() -> None:
    clock = Clock()
    meter = ModelMeter(clock)
    passes(meter, clock, (60, 0.6), (1, 0.05))  # a one-pair tail: mostly fixed cost
    expected = ((1 - ALPHA) * 0.6 + ALPHA * 0.05) / ((1 - ALPHA) * 60 + ALPHA * 1)
    assert meter.per_pair == pytest.approx(expected)
    assert meter.per_pair is not None and meter.per_pair < 0.011


def test_overlapping_answers_count_the_busy_time_once() -> None:
    """Two remote calls of 10 pairs sent together to a server that answers one after the
    other: the second answer took twice as long, but the server was busy 2 s for 20."""
    clock = Clock()
    meter = ModelMeter(clock)
    clock.now += 1.0
    meter.observe(10, 0, 1.0)
    clock.now += 1.0
    meter.observe(10, 0, 2.0)
    assert meter.per_pair == pytest.approx(0.1)


def test_a_remote_call_without_answer_is_a_lower_bound_that_hang_detection_ignores() -> None:
    clock = Clock()
    meter = ModelMeter(clock)
    passes(meter, clock, (100, 0.1))  # 1 ms a pair
    meter.unanswered(100, 1.5)
    assert meter.per_pair == pytest.approx(0.015)
    meter.unanswered(100, 0.1)
    assert meter.per_pair == pytest.approx(0.015), "a lower bound never lowers the estimate"
    assert meter.answered == pytest.approx(0.001), "hangs are judged by what answers said"
    # Quick answers bring the planning cost back down.
    passes(meter, clock, *[(100, 0.1)] * 20)
    assert meter.per_pair == pytest.approx(0.001, rel=0.02)


def test_a_hang_is_far_past_what_answers_predict() -> None:
    clock = Clock()
    meter = ModelMeter(clock)
    assert not meter.hang(10, 100.0), "nothing predicted: no answer is no fault"
    passes(meter, clock, (5, 0.005))  # 1 ms a pair; the slowest pass 5 ms
    allowed = (20 * 0.001 * SAFETY + 0.005) * HANG_FACTOR
    assert allowed < MIN_HANG_S
    assert not meter.hang(20, MIN_HANG_S * 0.99)
    assert meter.hang(20, MIN_HANG_S * 1.01)
    assert meter.hang(2000, 5.0) is False, "2000 pairs ahead take their time"


def test_capacity_says_what_fits_the_budget_and_warns_when_too_little_does() -> None:
    clock = Clock()
    meter = ModelMeter(clock)
    passes(meter, clock, *[(10, 0.1)] * 40)  # 10 ms a pair: 100 pairs/s
    capacity = meter.capacity(1.5, 50, 10)
    assert capacity is not None
    assert capacity.pairs_per_s == pytest.approx(100)
    assert capacity.k == 50, "the whole window fits"
    assert capacity.searches_per_s == pytest.approx(2.0)
    assert capacity.warning() is None
    slow = ModelMeter(clock)
    passes(slow, clock, (1, 2.0))  # a real-size model on a small CPU: 2 s a pair
    capacity = slow.capacity(1.5, 50, 10)
    assert capacity is not None and capacity.k == 0 and not capacity.enough
    warning = capacity.warning()
    assert warning is not None
    assert "fewer than rerank.min_window" in warning and "a GPU" in warning


def test_what_the_model_answered_of_the_work_under_way() -> None:
    """Counted from when the work was handed over, or from the end of the model's last
    piece of work if that came later (the pass under way started then)."""
    clock = Clock()
    meter = ModelMeter(clock)
    assert meter.answered_since(clock.now - 10) == 0.0, "unknown cost: nothing answered"
    passes(meter, clock, (20, 1.0))  # 50 ms a pair; the pass ended now
    handed_over = clock.now - 0.5  # before that pass ended
    clock.now += 0.2 * SAFETY
    assert meter.answered_since(handed_over) == pytest.approx(4)
    later = clock.now
    clock.now += 0.1 * SAFETY
    assert meter.answered_since(later) == pytest.approx(2)
    assert meter.answered_since(clock.now + 1) == 0.0
