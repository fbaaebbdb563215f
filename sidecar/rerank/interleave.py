"""Team-draft interleaving (Radlinski, Kurup and Joachims, "How does clickthrough data
reflect retrieval quality?", CIKM 2008) of the reranked window and ES's own order.

Two rankings, A (the reranker's) and B (ES's), pick in turns to build one list: in each
round a coin decides which team picks first, and each team adds its highest-ranked
document not already in the list, labelled with its team. A click on a document credits its
team; a query whose clicks credit the reranker more often is a win for it. Both teams get
the same number of picks (±1), whatever the coins say, so neither is favoured by position.

The coins come from the search's ``query_id`` (or, when the client sends none, its query
text): every page of one search (the same seed, the same two rankings) computes the same
interleaved list, so a later page continues it with no hit lost or repeated.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

RERANK = "rerank"
ES = "es"
#: Hits past the window: the same in both lists, drafted by neither team, so a click on
#: one credits neither.
NEITHER = "none"


@dataclass(frozen=True)
class Pick:
    """One place of the interleaved list: the position of the document in ES's order (its
    index into the window) and the team that picked it."""

    index: int
    team: str


def team_draft(reranked: Sequence[int], es_order: Sequence[int], seed: str) -> list[Pick]:
    """The interleaving of two orderings of the same window (each a permutation of its
    indices), by team draft with coins drawn from ``seed``."""
    rng = random.Random(hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest())
    teams = {RERANK: list(reranked), ES: list(es_order)}
    cursor = {RERANK: 0, ES: 0}
    taken: set[int] = set()
    out: list[Pick] = []
    picks = {RERANK: 0, ES: 0}
    size = len(set(reranked) | set(es_order))
    while len(out) < size:
        # The team with fewer picks goes next; a tie is decided by the coin.
        if picks[RERANK] != picks[ES]:
            first = RERANK if picks[RERANK] < picks[ES] else ES
        else:
            first = RERANK if rng.random() < 0.5 else ES
        ranking = teams[first]
        while cursor[first] < len(ranking) and ranking[cursor[first]] in taken:
            cursor[first] += 1
        if cursor[first] == len(ranking):
            first = ES if first == RERANK else RERANK  # this team has nothing new left
            ranking = teams[first]
            while cursor[first] < len(ranking) and ranking[cursor[first]] in taken:
                cursor[first] += 1
        index = ranking[cursor[first]]
        taken.add(index)
        picks[first] += 1
        out.append(Pick(index, first))
    return out


def credit(teams: Sequence[str], clicked: Sequence[int]) -> tuple[int, int]:
    """Clicks credited to (the reranker, ES): ``clicked`` are positions (0-based) in the
    interleaved list whose ``teams`` says who picked each."""
    rerank = sum(1 for p in clicked if 0 <= p < len(teams) and teams[p] == RERANK)
    es = sum(1 for p in clicked if 0 <= p < len(teams) and teams[p] == ES)
    return rerank, es
