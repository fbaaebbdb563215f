"""Per-query comparison of two rankers: wins, losses, ties and a paired randomization test.

The test is the sign-flip (paired) permutation test used in IR evaluation (Smucker, Allan and
Carterette, CIKM 2007): under the null hypothesis the two systems are exchangeable on every
query, so each per-query difference is as likely to have the other sign. The p-value is the
share of random sign assignments whose mean difference is at least as far from zero as the
observed one (two-sided), counting the observed assignment itself: ``(hits + 1) / (n + 1)``.
Seeded, so a report can be reproduced exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Per-query differences smaller than this count as ties (float noise, not a change).
TIE_EPSILON = 1e-9
DEFAULT_PERMUTATIONS = 10_000
DEFAULT_SEED = 20240


@dataclass(frozen=True)
class Paired:
    wins: int
    losses: int
    ties: int
    mean_delta: float
    p_value: float

    @property
    def wlt(self) -> str:
        return f"{self.wins}/{self.losses}/{self.ties}"


def wins_losses_ties(
    base: Sequence[float], other: Sequence[float], eps: float = TIE_EPSILON
) -> tuple[int, int, int]:
    """Queries where ``other`` beats ``base``, loses to it, and ties with it."""
    _check(base, other)
    wins = sum(1 for a, b in zip(base, other, strict=True) if b - a > eps)
    losses = sum(1 for a, b in zip(base, other, strict=True) if a - b > eps)
    return wins, losses, len(base) - wins - losses


def randomization_p(
    base: Sequence[float],
    other: Sequence[float],
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
) -> float:
    """Two-sided p-value of the mean paired difference ``other - base`` (sign-flip test)."""
    _check(base, other)
    if permutations < 1:
        raise ValueError("permutations must be at least 1")
    diffs = np.asarray(other, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    diffs[np.abs(diffs) <= TIE_EPSILON] = 0.0
    n = diffs.size
    observed = abs(float(diffs.mean())) if n else 0.0
    if observed == 0.0:
        return 1.0
    rng = np.random.default_rng(seed)
    hits = 0
    # Chunks bound memory for large query sets (permutations x queries signs at a time).
    chunk = max(1, min(permutations, 4_000_000 // max(n, 1)))
    done = 0
    while done < permutations:
        m = min(chunk, permutations - done)
        signs = rng.integers(0, 2, size=(m, n), dtype=np.int8) * 2 - 1
        means = np.abs(signs @ diffs) / n
        # A relative tolerance so the observed assignment itself always counts as a hit.
        hits += int(np.count_nonzero(means >= observed * (1 - 1e-9)))
        done += m
    return (hits + 1) / (permutations + 1)


def compare(
    base: Sequence[float],
    other: Sequence[float],
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
) -> Paired:
    wins, losses, ties = wins_losses_ties(base, other)
    mean_delta = float(np.mean(np.subtract(other, base))) if len(base) else 0.0
    p = randomization_p(base, other, permutations=permutations, seed=seed)
    return Paired(wins, losses, ties, mean_delta, p)


def _check(base: Sequence[float], other: Sequence[float]) -> None:
    if len(base) != len(other):
        raise ValueError(f"paired runs differ in length ({len(base)} vs {len(other)} queries)")
