"""Deadline: one clock, the budget beyond ES's usual time; ES's lateness and the CPU hold
come off it (UsualEsTime learns what usual is, per index)."""

from __future__ import annotations

import pytest

from sidecar.deadline import ES_ALPHA, MAX_INDICES, MIN_SAMPLES, Deadline, UsualEsTime, now


def test_a_deadline_is_the_budget_from_arrival() -> None:
    deadline = Deadline(1.5, arrived=now())
    assert 1.4 < deadline.remaining() <= 1.5
    assert not deadline.expired
    late = Deadline(1.5, arrived=now() - 2.0)
    assert late.expired and late.remaining() == 0.0
    assert deadline.within(0.5).budget_s == 0.5 and deadline.within(5.0).budget_s == 1.5


def taught(usual: UsualEsTime, key: str, took_s: float) -> None:
    for _ in range(MIN_SAMPLES):
        assert usual.learn(key, took_s) is None, "nothing is cut until the usual is known"


def test_es_time_is_credited_up_to_its_usual_time() -> None:
    usual = UsualEsTime()
    taught(usual, "books", 0.5)
    # ES answered in 0.45 s: all of it is credited (quicker than usual takes nothing off).
    quick = Deadline(1.5, arrived=now() - 0.45)
    quick.es_answered(usual, "books")
    assert quick.credit_s == pytest.approx(0.45, abs=0.01)
    # ES answered in 0.9 s: only the usual time is credited; the rest comes off the budget.
    expected = (1 - ES_ALPHA) * 0.5 + ES_ALPHA * 0.45
    slow = Deadline(1.5, arrived=now() - 0.9)
    slow.es_answered(usual, "books")
    assert slow.credit_s == pytest.approx(expected, abs=0.001)
    assert slow.remaining() == pytest.approx(1.5 - (0.9 - expected), abs=0.02)
    other = Deadline(1.5, arrived=now() - 3.0)
    other.es_answered(usual, "articles")
    assert other.remaining() == pytest.approx(1.5, abs=0.02), "each index has its own"


def test_a_hold_is_spent_budget() -> None:
    usual = UsualEsTime()
    taught(usual, "books", 0.2)
    deadline = Deadline(1.5, arrived=now() - 0.7)
    deadline.held(0.5)  # of the 0.7 s, 0.5 were the CPU hold, 0.2 ES
    deadline.es_answered(usual, "books")
    assert deadline.remaining() == pytest.approx(1.0, abs=0.02)


def test_indices_are_bounded() -> None:
    usual = UsualEsTime()
    for n in range(MAX_INDICES + 10):
        usual.learn(f"index-{n}", 0.1)
    assert len(usual) == MAX_INDICES
