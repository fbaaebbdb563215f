"""Ranking metrics over graded judgments (unjudged documents count as non-relevant).

nDCG@k uses gain 2^rel - 1 and a log2(rank + 1) discount, as in the TREC DL reference
figures of the shared MS MARCO slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at(ranking: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float:
    gains = [2 ** qrels.get(doc, 0) - 1 for doc in ranking[:k]]
    ideal = sorted((2**rel - 1 for rel in qrels.values() if rel > 0), reverse=True)[:k]
    best = dcg(ideal)
    return dcg(gains) / best if best > 0 else 0.0


def mrr_at(ranking: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float:
    for i, doc in enumerate(ranking[:k]):
        if qrels.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def recall_at(ranking: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    relevant = {d for d, rel in qrels.items() if rel > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking[:k])) / len(relevant)
