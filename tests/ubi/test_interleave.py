"""Team-draft interleaving: the rule of Radlinski, Kurup and Joachims (2008), checked on
its properties, and the crediting of clicks."""

from __future__ import annotations

import random

import pytest

from sidecar.rerank.interleave import ES, RERANK, credit, team_draft


@pytest.mark.parametrize("seed", [f"query-{n}" for n in range(50)])
def test_each_round_both_teams_pick_their_best_not_yet_taken(seed: str) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 30)
    es = list(range(n))
    reranked = es[:]
    rng.shuffle(reranked)
    picks = team_draft(reranked, es, seed)
    # Every hit exactly once.
    assert sorted(p.index for p in picks) == es
    # The teams' pick counts never differ by more than one at any point, and after each
    # pair of picks (a round) they are equal.
    counts = {RERANK: 0, ES: 0}
    for i, pick in enumerate(picks, start=1):
        counts[pick.team] += 1
        assert abs(counts[RERANK] - counts[ES]) <= 1
        if i % 2 == 0:
            assert counts[RERANK] == counts[ES]
    # Each pick is its team's highest-ranked hit not already in the list.
    taken: set[int] = set()
    for pick in picks:
        ranking = reranked if pick.team == RERANK else es
        assert pick.index == next(h for h in ranking if h not in taken)
        taken.add(pick.index)


def test_the_same_search_gets_the_same_list_on_every_page() -> None:
    reranked, es = [3, 0, 2, 1, 4], [0, 1, 2, 3, 4]
    assert team_draft(reranked, es, "q-1") == team_draft(reranked, es, "q-1")


def test_which_team_picks_first_is_a_coin_per_search() -> None:
    firsts = {team_draft([1, 0], [0, 1], f"q-{n}")[0].team for n in range(64)}
    assert firsts == {RERANK, ES}


def test_identical_rankings_still_split_the_picks() -> None:
    picks = team_draft([0, 1, 2, 3], [0, 1, 2, 3], "q")
    assert [p.index for p in picks] == [0, 1, 2, 3]
    assert sorted(p.team for p in picks) == [ES, ES, RERANK, RERANK]


def test_clicks_credit_the_team_that_placed_the_hit() -> None:
    teams = [RERANK, ES, RERANK, ES]
    assert credit(teams, [0, 2]) == (2, 0)
    assert credit(teams, [1]) == (0, 1)
    assert credit(teams, [0, 1]) == (1, 1)
    assert credit(teams, [7]) == (0, 0), "a position past the list credits no one"
