"""The ranking metrics and the paired comparison, against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from devtools.eval.ranking import mrr_at, ndcg_at, recall_at
from devtools.eval.stats import compare, randomization_p, wins_losses_ties

#: Graded judgments: 3 perfectly relevant, 2 highly, 1 related, 0 judged non-relevant.
QRELS = {"a": 3, "b": 1, "c": 0, "d": 2}
#: "x" is unjudged (counts as non-relevant), "c" is judged non-relevant.
RANKING = ["x", "a", "c", "b"]


def test_ndcg_gain_discount_and_ideal_from_all_judged_documents() -> None:
    # DCG: gain 2^rel - 1 at rank i discounted by log2(i + 1): a (7) at rank 2, b (1) at 4.
    dcg = 7 / math.log2(3) + 1 / math.log2(5)
    # The ideal ranks every judged relevant document, including d, which was not retrieved.
    ideal = 7 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(RANKING, QRELS, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at(RANKING, QRELS, 10) == pytest.approx(0.516054, abs=1e-6)


def test_ndcg_cuts_both_the_ranking_and_the_ideal_at_k() -> None:
    assert ndcg_at(RANKING, QRELS, 2) == pytest.approx((7 / math.log2(3)) / (7 + 3 / math.log2(3)))
    assert ndcg_at(RANKING, QRELS, 1) == 0.0


def test_ndcg_bounds() -> None:
    assert ndcg_at(["a", "d", "b"], QRELS, 10) == pytest.approx(1.0)
    assert ndcg_at(["x", "y"], QRELS, 10) == 0.0
    # A query without relevant judgments scores 0 (not a division by zero).
    assert ndcg_at(["a"], {"a": 0}, 10) == 0.0


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_document() -> None:
    assert mrr_at(RANKING, QRELS, 10) == 0.5
    assert mrr_at(["c", "x", "d"], QRELS, 10) == pytest.approx(1 / 3)
    assert mrr_at(RANKING, QRELS, 1) == 0.0  # cut at k
    assert mrr_at(["c", "x"], QRELS, 10) == 0.0  # judged non-relevant is not relevant


def test_recall_counts_relevant_documents_found_in_the_top_k() -> None:
    assert recall_at(RANKING, QRELS, 3) == pytest.approx(1 / 3)  # a of {a, b, d}
    assert recall_at(RANKING, QRELS, 4) == pytest.approx(2 / 3)  # a, b
    assert recall_at(["a", "b", "d"], QRELS, 100) == 1.0
    assert recall_at(["a"], {"a": 0}, 10) == 0.0


def test_wins_losses_ties() -> None:
    base = [0.5, 0.5, 0.5, 0.2]
    other = [0.7, 0.4, 0.5 + 1e-12, 0.2]
    assert wins_losses_ties(base, other) == (1, 1, 2)


def test_identical_runs_give_p_one() -> None:
    run = [0.1, 0.4, 0.9, 0.3, 0.0]
    assert randomization_p(run, list(run)) == 1.0
    result = compare(run, list(run))
    assert (result.wins, result.losses, result.ties) == (0, 0, 5)
    assert result.p_value == 1.0
    assert result.mean_delta == 0.0


def test_a_large_consistent_gain_gives_a_small_p() -> None:
    base = [0.3 + 0.01 * i for i in range(20)]
    better = [b + 0.3 for b in base]
    p = randomization_p(base, better)
    # Only the all-plus and all-minus sign patterns are as extreme: exact p = 2 / 2^20.
    assert p < 0.001
    assert compare(base, better).wlt == "20/0/0"


def test_p_matches_the_exact_permutation_distribution() -> None:
    # Three equal differences: 2 of the 8 sign patterns reach |mean| = 1, so p = 0.25.
    p = randomization_p([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], permutations=20_000)
    assert p == pytest.approx(0.25, abs=0.015)
    # Gains and losses that cancel out are no evidence of a difference.
    assert randomization_p([0.5] * 6, [0.6, 0.4, 0.7, 0.3, 0.55, 0.45]) > 0.9


def test_the_test_is_two_sided_seeded_and_checks_its_input() -> None:
    base = [0.2, 0.5, 0.4, 0.6, 0.1, 0.3, 0.7, 0.2]
    other = [0.3, 0.5, 0.6, 0.5, 0.3, 0.3, 0.9, 0.25]
    forward = randomization_p(base, other, seed=1)
    assert forward == randomization_p(other, base, seed=1)
    assert forward == randomization_p(base, other, seed=1)
    with pytest.raises(ValueError, match="differ in length"):
        randomization_p([0.1], [0.1, 0.2])
