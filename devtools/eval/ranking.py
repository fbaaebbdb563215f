"""Ranking metrics over graded judgments (unjudged documents count as non-relevant).

nDCG@k uses gain 2^rel - 1 and a log2(rank + 1) discount, as in the TREC DL reference
figures of the shared MS MARCO slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

NDCG_K = 10
MRR_K = 10
RECALL_DEPTH = 100


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


def metric_names(window: int) -> tuple[str, ...]:
    return (f"ndcg@{NDCG_K}", f"mrr@{MRR_K}", f"recall@{window}", f"recall@{RECALL_DEPTH}")


def query_metrics(
    ranking: Sequence[str], qrels: Mapping[str, int], window: int
) -> dict[str, float]:
    """The harness's metrics of one query: nDCG@10, MRR@10, Recall@window, Recall@100."""
    return {
        f"ndcg@{NDCG_K}": ndcg_at(ranking, qrels, NDCG_K),
        f"mrr@{MRR_K}": mrr_at(ranking, qrels, MRR_K),
        f"recall@{window}": recall_at(ranking, qrels, window),
        f"recall@{RECALL_DEPTH}": recall_at(ranking, qrels, RECALL_DEPTH),
    }
