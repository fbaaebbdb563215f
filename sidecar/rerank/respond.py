"""Rewrite an ES search response after (or instead of) reranking.

Only ``hits.hits`` and ``hits.max_score`` change; ``hits.total``, aggregations, suggestions,
``_shards``, highlight and ``fields`` stay exactly as ES sent them. The page the client asked
for, ``[from, from+size)``, is cut from the widened result: the reranked window first, then
the hits past the window in ES order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sidecar.rerank.doc_text import lookup
from sidecar.rerank.index_config import ScoreOptions
from sidecar.rerank.plan import SearchPlan
from sidecar.rerank.source_filter import apply_source_filter


def hits_of(body: Any) -> list[dict[str, Any]] | None:
    if not isinstance(body, dict):
        return None
    hits = body.get("hits")
    if not isinstance(hits, dict) or not isinstance(hits.get("hits"), list):
        return None
    items: list[dict[str, Any]] = hits["hits"]
    if not all(isinstance(h, dict) for h in items):
        return None
    return items


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return 0.0


def fused_scores(
    window: Sequence[dict[str, Any]], scores: Sequence[float], opts: ScoreOptions
) -> list[float]:
    """rerank_weight * rerank + bm25_weight * bm25/max(bm25) + sum(w * field/max(field))."""
    bm25 = [_number(h.get("_score")) for h in window]
    top = max(bm25, default=0.0)
    out = [
        opts.fusion.rerank_weight * s + opts.fusion.bm25_weight * (b / top if top > 0 else 0.0)
        for s, b in zip(scores, bm25, strict=True)
    ]
    for name, weight in opts.boost_fields:
        values = [_number(lookup(h.get("_source"), name)) for h in window]
        peak = max(values, default=0.0)
        if peak > 0:
            out = [o + weight * v / peak for o, v in zip(out, values, strict=True)]
    return out


def rewrite(
    body: dict[str, Any],
    plan: SearchPlan,
    scores: Sequence[float] | None,
    opts: ScoreOptions,
    status: dict[str, Any],
) -> None:
    """Reorder (when ``scores`` is given), cut the page, restore the client's _source filter."""
    hits = hits_of(body)
    if hits is None:
        return
    # The budget may have allowed only a prefix of the window: the rest keeps ES order.
    n = min(plan.window, len(hits)) if scores is None else min(len(scores), len(hits))
    window, rest = hits[:n], hits[n:]
    annotate = opts.annotate_field
    if scores is not None:
        final = fused_scores(window, scores, opts) if opts.mode == "fusion" else list(scores)
        order = sorted(range(n), key=lambda i: -final[i])  # stable: ties keep ES order
        ranked: list[dict[str, Any]] = []
        for new_rank, i in enumerate(order, 1):
            if opts.min_score is not None and scores[i] < opts.min_score:
                continue
            hit = window[i]
            if annotate:
                hit[annotate] = {
                    "original_rank": i + 1,
                    "original_score": hit.get("_score"),
                    "rerank_score": scores[i],
                    "rank": new_rank,
                }
            hit["_score"] = final[i]
            ranked.append(hit)
        window = ranked
        body["hits"]["max_score"] = max((final[i] for i in order), default=None)
    if annotate:
        for pos, hit in enumerate(rest, n + 1):
            hit[annotate] = {"original_rank": pos, "reranked": False}
    page = (window + rest)[plan.from_ : plan.from_ + plan.size]
    for hit in page:
        apply_source_filter(hit, plan.source_filter)
    body["hits"]["hits"] = page
    if annotate:
        body[annotate] = status
