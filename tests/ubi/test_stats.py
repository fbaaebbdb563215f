"""The exact two-sided sign test, against values worked out by hand and by the binomial."""

from __future__ import annotations

import math

import pytest

from sidecar.ubi.stats import sign_test, verdict


def exact(wins: int, losses: int) -> float:
    n = wins + losses
    tail: float = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_small_cases_by_hand() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(1, 0) == 1.0  # 2 * P(X <= 0) = 2 * 1/2
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(6, 1) == pytest.approx(2 * 8 / 128)
    assert sign_test(3, 3) == 1.0


@pytest.mark.parametrize(("wins", "losses"), [(10, 2), (30, 18), (2, 40), (120, 90), (0, 9)])
def test_agrees_with_the_binomial(wins: int, losses: int) -> None:
    assert sign_test(wins, losses) == pytest.approx(exact(wins, losses), rel=1e-9)
    assert sign_test(wins, losses) == sign_test(losses, wins), "two-sided: symmetric"


def test_large_counts_stay_finite() -> None:
    p = sign_test(5200, 4800)
    assert 0 < p < 1e-4


def test_the_verdict_names_the_winner_only_when_significant() -> None:
    assert "reranker wins" in verdict(30, 10, 5, sign_test(30, 10))
    assert "Elasticsearch's own order wins" in verdict(5, 30, 0, sign_test(5, 30))
    assert "no significant difference" in verdict(6, 5, 2, sign_test(6, 5))
    assert "no decisive queries" in verdict(0, 0, 3, 1.0)
