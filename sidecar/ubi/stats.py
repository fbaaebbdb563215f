"""The exact two-sided sign test, for interleaving's wins and losses.

Under the null hypothesis (neither ranking is preferred), each decisive query is a win for
the reranker with probability 1/2: the wins are Binomial(n, 1/2) with n = wins + losses,
ties left out. The two-sided p-value is twice the probability of a result at least as far
from n/2 as the one seen, capped at 1.
"""

from __future__ import annotations

import math


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact p-value of ``wins`` against ``losses`` (1.0 when there are none)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = min(wins, losses)
    # P(X <= tail) for X ~ Binomial(n, 1/2), summed in log space: exact to float precision
    # for any n (math.comb's integers grow with n, these do not).
    logs = [_log_comb(n, k) - n * math.log(2) for k in range(tail + 1)]
    top = max(logs)
    p_tail = math.exp(top) * math.fsum(math.exp(v - top) for v in logs)
    return min(1.0, 2 * p_tail)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def verdict(wins: int, losses: int, ties: int, p_value: float, alpha: float = 0.05) -> str:
    """One line for a person: who wins, and whether it is significant."""
    decisive = wins + losses
    if decisive == 0:
        return "no decisive queries yet: no clicks on interleaved results"
    if p_value < alpha:
        winner = "the reranker" if wins > losses else "Elasticsearch's own order"
        return (
            f"{winner} wins: {wins} to {losses} decisive queries ({ties} ties), "
            f"p = {p_value:.3g} < {alpha}"
        )
    return (
        f"no significant difference yet: {wins} to {losses} decisive queries ({ties} ties), "
        f"p = {p_value:.3g}"
    )
