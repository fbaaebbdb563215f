"""Rewrite an ES search response after (or instead of) reranking.

Only ``hits.hits`` and ``hits.max_score`` change; ``hits.total``, aggregations, suggestions,
``_shards``, highlight and ``fields`` stay exactly as ES sent them. The page the client asked
for, ``[from, from+size)``, is cut from the widened result: the reranked window first, then
the hits past the window in ES order.

``_score`` never rises down a page (docs/scores.md): the reranked hits are in the order of
the score they are served with, and a hit past the reranked window (the budget allowed only
the top K, or a page that runs past the window) is placed below the lowest reranked score,
in ES's order: the n-th hit past the edge scores ``lowest - n * step``. With
``score_mode: es_scores`` the n-th hit served gets ES's n-th score, and the hits past the
edge keep their own, which are no higher. A hit's ``sort`` values follow its ``_score``
when the client sorted by ``_score``, and with ``explain`` its ``_explanation`` explains
the score served (:mod:`sidecar.rerank.explain`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sidecar.rerank.doc_text import lookup
from sidecar.rerank.explain import Explainer
from sidecar.rerank.index_config import ScoreOptions
from sidecar.rerank.interleave import NEITHER, team_draft
from sidecar.rerank.plan import SearchPlan
from sidecar.rerank.source_filter import apply_source_filter

#: The gap between neighbours below the reranked window, relative to the lowest reranked
#: score (at least 1): small beside any gap a model's scores have, large beside a double's
#: precision, so scores past the edge stay apart and below.
EDGE_STEP = 1e-6


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


@dataclass(frozen=True)
class Served:
    """A page as served, for the query log: each hit's object id (``_id``, or the tracked
    ``_source`` field), and in an interleaved page the team that placed each hit."""

    ids: list[str] = field(default_factory=list)
    teams: list[str] | None = None
    start: int = 0


def object_id(hit: dict[str, Any], id_field: str | None) -> str:
    """A hit's object id: ``id_field`` of its ``_source`` when it holds a scalar, else
    ``_id``."""
    if id_field:
        value = lookup(hit.get("_source"), id_field)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    return str(hit.get("_id", ""))


def served(plan: SearchPlan, hits: Sequence[dict[str, Any]], start: int) -> Served:
    """The page ES's answer holds, as served unchanged."""
    field_ = plan.tracked.object_id_field if plan.tracked else None
    return Served([object_id(h, field_) for h in hits], None, start)


def rewrite(
    body: dict[str, Any],
    plan: SearchPlan,
    scores: Sequence[float] | None,
    opts: ScoreOptions,
    status: dict[str, Any],
    model: str = "",
) -> Served:
    """Reorder (when ``scores`` is given: by score, or interleaved with ES's order), cut the
    page, restore the client's _source filter; what was served. ``model`` scored it."""
    hits = hits_of(body)
    if hits is None:
        return Served(start=plan.from_)
    # The budget may have allowed only a prefix of the window: the rest keeps ES order.
    n = min(plan.window, len(hits)) if scores is None else min(len(scores), len(hits))
    teams: list[str] | None = None
    page = _Page(plan, opts, Explainer(plan.explain and scores is not None, model, opts))
    if scores is not None and plan.mode == "interleave":
        n = min(plan.window, len(hits))
        window, teams = _interleaved(hits[:n], scores, plan, page)
        body["hits"]["max_score"] = window[0].get("_score") if window else None
    elif scores is not None:
        window, body["hits"]["max_score"], floor = _reranked(hits[:n], scores, page)
        page.below(hits[n:], floor, len(scores))
    else:
        window = hits[:n]
    rest = hits[n:]
    if plan.annotate:
        for pos, hit in enumerate(rest, n + 1):
            hit[plan.annotate] = {"original_rank": pos, "reranked": False}
    end = plan.from_ + plan.size
    cut = (window + rest)[plan.from_ : end]
    if teams is not None:
        teams = (teams + [NEITHER] * len(rest))[plan.from_ : end]
    page_served = replace(served(plan, cut, plan.from_), teams=teams)
    for hit in cut:
        apply_source_filter(hit, plan.source_filter)
    body["hits"]["hits"] = cut
    if plan.annotate:
        body[plan.annotate] = status
    return page_served


@dataclass(frozen=True)
class _Page:
    """How the hits of one answer are given their served scores."""

    plan: SearchPlan
    opts: ScoreOptions
    why: Explainer

    def score(self, hit: dict[str, Any], value: float | None) -> None:
        """Serve ``hit`` with ``value``: its ``_score``, and its ``sort`` values when the
        client sorted by ``_score``."""
        hit["_score"] = value
        if self.plan.sort_by_score and isinstance(hit.get("sort"), list):
            hit["sort"] = [value for _ in hit["sort"]]

    def below(self, rest: Sequence[dict[str, Any]], floor: float | None, k: int) -> None:
        """Hits past the ``k`` reranked: below ``floor``, the lowest reranked score, in ES's
        order (None: ``es_scores``, where their own scores are below already)."""
        step = EDGE_STEP * max(1.0, abs(floor)) if floor is not None else 0.0
        for place, hit in enumerate(rest, 1):
            value = floor - place * step if floor is not None else _number(hit.get("_score"))
            self.why.below(hit, value, k)
            if floor is not None:
                self.score(hit, value)


def _reranked(
    window: list[dict[str, Any]], scores: Sequence[float], page: _Page
) -> tuple[list[dict[str, Any]], float | None, float | None]:
    """The window in score order (ties keep ES order), annotated, ``min_score`` applied;
    its highest score served, and the lowest score of its order (the floor below which
    the hits past the window go)."""
    opts, annotate = page.opts, page.plan.annotate
    n = len(window)
    final = fused_scores(window, scores, opts) if opts.mode == "fusion" else list(scores[:n])
    order = sorted(range(n), key=lambda i: -final[i])  # stable: ties keep ES order
    # es_scores: the n-th hit served gets ES's n-th score of the window.
    es_scale = sorted((_number(h.get("_score")) for h in window), reverse=True)
    ranked: list[dict[str, Any]] = []
    for new_rank, i in enumerate(order, 1):
        if opts.min_score is not None and scores[i] < opts.min_score:
            continue
        hit = window[i]
        value = es_scale[len(ranked)] if opts.mode == "es_scores" else final[i]
        if annotate:
            hit[annotate] = {
                "original_rank": i + 1,
                "original_score": hit.get("_score"),
                "rerank_score": scores[i],
                "rank": new_rank,
            }
        page.why.reranked(hit, value, scores[i], len(ranked) + 1)
        page.score(hit, value)
        ranked.append(hit)
    if opts.mode == "es_scores":
        return ranked, (es_scale[0] if ranked else None), None
    return ranked, max(final, default=None), min(final, default=None)


def _interleaved(
    window: list[dict[str, Any]],
    scores: Sequence[float],
    plan: SearchPlan,
    page: _Page,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The window interleaved by team draft (:mod:`sidecar.rerank.interleave`): the
    reranker's order (its scored prefix by score, then the rest in ES order) against ES's.
    The i-th hit served gets ES's i-th score, so ``_score`` falls down the page in ES's
    scale."""
    k = len(scores)
    by_score = sorted(range(k), key=lambda i: -scores[i]) + list(range(k, len(window)))
    # The coins of one search: its query_id when the client holds one (every page sends
    # it back), else its query, so that the next page continues the same list.
    tracked = plan.tracked
    seed = tracked.query_id if tracked is not None and tracked.given else plan.query_text
    picks = team_draft(by_score, list(range(len(window))), seed)
    es_scores: list[float | None] = [hit.get("_score") for hit in window]
    out: list[dict[str, Any]] = []
    for rank, pick in enumerate(picks):
        hit = window[pick.index]
        model_score = scores[pick.index] if pick.index < k else None
        if plan.annotate:
            hit[plan.annotate] = {
                "original_rank": pick.index + 1,
                "original_score": hit.get("_score"),
                "rerank_score": model_score,
                "rank": rank + 1,
                "team": pick.team,
            }
        page.why.interleaved(hit, _number(es_scores[rank]), model_score, pick.team)
        page.score(hit, es_scores[rank])
        out.append(hit)
    return out, [p.team for p in picks]
