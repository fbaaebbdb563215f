"""EsTimes: a search that waited longer than usual before its model stage gets that much
less of the budget, so ES's slow tail and the model's budget do not add up."""

from __future__ import annotations

import pytest

from sidecar.rerank.es_time import ALPHA, MAX_INDICES, MIN_SAMPLES, EsTimes


def _taught(times: EsTimes, key: str, waited_s: float) -> None:
    for _ in range(MIN_SAMPLES):
        assert times.excess(key, waited_s) == 0.0, "nothing is cut until the usual is known"


def test_only_the_wait_beyond_the_usual_counts() -> None:
    times = EsTimes()
    _taught(times, "books", 0.5)
    assert times.excess("books", 0.45) == 0.0, "quicker than usual takes nothing off"
    usual = (1 - ALPHA) * 0.5 + ALPHA * 0.45
    assert times.excess("books", 0.9) == pytest.approx(0.9 - usual)
    assert times.excess("articles", 3.0) == 0.0, "each index has its own usual time"


def test_a_quick_first_answer_cuts_nothing() -> None:
    times = EsTimes()
    times.excess("books", 0.001)  # ES's request cache answered the first one
    assert times.excess("books", 0.5) == 0.0


def test_indices_are_bounded() -> None:
    times = EsTimes()
    for n in range(MAX_INDICES + 10):
        times.excess(f"index-{n}", 0.1)
    assert len(times._usual) == MAX_INDICES
    assert "index-0" not in times._usual, "the longest unseen was forgotten"
