"""Each hit's ``_explanation`` when the client asked ES to explain (``explain``): the score
the sidecar serves, explained.

ES explains the score it computed; after a rerank the client is served another one. Each
served hit's explanation is a node in ES's own shape (``value``, ``description``,
``details``) whose value is the ``_score`` served and whose description names the model
and the ``score_mode``; ES's own explanation is kept whole as one of its details, so a
client (or Kibana's explain view) reads both how ES matched the hit and why it sits where
it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.rerank.index_config import ScoreOptions


def node(value: Any, description: str, details: list[Any] | None = None) -> dict[str, Any]:
    """An explanation node, keyed as ES writes one."""
    return {"value": value, "description": description, "details": details or []}


@dataclass(frozen=True)
class Explainer:
    """Writes the explanations of one answer (nothing when ``on`` is false)."""

    on: bool
    model: str
    opts: ScoreOptions

    def _set(self, hit: dict[str, Any], served: float, description: str, *extra: Any) -> None:
        es_own = hit.get("_explanation")
        details = [*extra, es_own] if isinstance(es_own, dict) else list(extra)
        hit["_explanation"] = node(served, description, details)

    def _model(self, score: float) -> dict[str, Any]:
        return node(score, f"score of the rerank model {self.model} for the query and document")

    def reranked(self, hit: dict[str, Any], served: float, model_score: float, place: int) -> None:
        """A hit of the reranked window, served ``place``-th (from 1) of the window."""
        if not self.on:
            return
        mode, fusion = self.opts.mode, self.opts.fusion
        if mode == "fusion":
            boosts = "".join(f" + {w:g} × {name} / the window's highest" for name, w in
                             self.opts.boost_fields)  # fmt: skip
            how = (
                f"{fusion.rerank_weight:g} × the model's score + {fusion.bm25_weight:g} × "
                f"ES's score / the window's highest{boosts}"
            )
        elif mode == "es_scores":
            how = f"placed {place} by the model's score, with ES's {place}-th highest score"
        else:
            how = "the model's score, in place of ES's"
        description = f"reranked by {self.model} (rerank.score_mode: {mode}): {how}"
        self._set(hit, served, description, self._model(model_score))

    def below(self, hit: dict[str, Any], served: float, reranked: int) -> None:
        """A hit past the reranked window: ES's order, below every reranked score."""
        if self.on:
            self._set(
                hit,
                served,
                f"not reranked: past the {reranked} hits {self.model} reranked, so placed "
                "below the lowest reranked score, in ES's order",
            )

    def interleaved(
        self, hit: dict[str, Any], served: float, model_score: float | None, team: str
    ) -> None:
        """A hit of an interleaved window (rollout mode ``interleave``)."""
        if not self.on:
            return
        extra = [self._model(model_score)] if model_score is not None else []
        self._set(
            hit,
            served,
            f"interleaved: picked by the {team} team from {self.model}'s order and ES's, "
            "with ES's score at this place",
            *extra,
        )
