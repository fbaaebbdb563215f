"""The rerank step, shared by ``_search`` and ``_msearch``.

Before ES: :meth:`RerankStep.plan` turns a search body and its rollout mode into a
:class:`~sidecar.rerank.plan.SearchPlan` (rerank it, or why not). After ES:
:meth:`RerankStep.apply` scores the window (or hands it to shadow mode), rewrites the
response and says what happened in an :class:`~sidecar.rerank.outcome.Outcome`. It knows
nothing of HTTP: bodies in, bodies out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config import ModeName, SidecarConfig
from sidecar.errors import UpstreamBadResponse
from sidecar.jsonutil import dumps, loads
from sidecar.rerank.engine import Doc, RerankEngine, ScoredWindow, Timings
from sidecar.rerank.index_config import IndexRules
from sidecar.rerank.outcome import SHADOWED, Outcome, overall
from sidecar.rerank.plan import SearchPlan, plan_search
from sidecar.rerank.respond import hits_of, rewrite
from sidecar.rerank.shadow import ShadowRunner

ES_ERROR = Outcome("skipped", "es_error")


@dataclass(frozen=True)
class Applied:
    """A rewritten response body and what happened to it."""

    outcome: Outcome
    body: bytes
    #: ``body`` as the object it was serialized from.
    document: Any
    timings: Timings


class RerankStep:
    def __init__(self, config: SidecarConfig, engine: RerankEngine, shadow: ShadowRunner) -> None:
        self.config = config
        self.engine = engine
        self.shadow = shadow
        self.indices = IndexRules(config.rerank)

    def plan(self, body: Any, params: Mapping[str, str], index: str, mode: ModeName) -> SearchPlan:
        return plan_search(body, params, self.config.rerank, self.indices, index, mode)

    def docs(self, plan: SearchPlan, hits: Sequence[dict[str, Any]]) -> list[Doc]:
        out = []
        for hit in hits:
            spec = self.indices.doc_text(str(hit.get("_index", plan.index)), plan.fields)
            text = spec.text(hit.get("_source"))
            out.append(Doc(str(hit.get("_index", "")), str(hit.get("_id", "")), text))
        return out

    async def rerank(self, plan: SearchPlan, response: Any, rid: str) -> tuple[Outcome, Timings]:
        """Rerank one parsed search response in place (a ``_msearch`` item is one too)."""
        hits = hits_of(response)
        if hits is None or response.get("status", 200) != 200:
            return ES_ERROR, Timings()
        docs = self.docs(plan, hits[: plan.window])
        settings = plan.settings

        def score() -> Any:
            return self.engine.score(plan.query_text, plan.instruction, docs, settings.budget_s)

        if plan.mode == "shadow":
            self.shadow.submit(score, rid)
            rewrite(response, plan, None, settings.score, self.engine.status(SHADOWED, None))
            return SHADOWED, Timings()
        scored: ScoredWindow = await score()
        rewrite(
            response,
            plan,
            scored.scores,
            settings.score,
            self.engine.status(scored.outcome, scored),
        )
        return scored.outcome, scored.timings

    async def apply(self, plan: SearchPlan, raw: bytes, rid: str) -> Applied:
        """Rerank ES's ``_search`` answer (``raw``, status 200)."""
        body = _parse(raw, "a search response that is not valid JSON")
        if hits_of(body) is None:
            raise UpstreamBadResponse("Elasticsearch returned a search response without hits")
        outcome, timings = await self.rerank(plan, body, rid)
        return Applied(outcome, dumps(body), body, timings)

    async def apply_many(self, plans: Sequence[SearchPlan], raw: bytes, rid: str) -> Applied:
        """Rerank ES's ``_msearch`` answer: the sub-searches are scored concurrently, so
        the batching worker coalesces them into shared forward passes."""
        body = _parse(raw, "an _msearch response that is not valid JSON")
        responses = body.get("responses") if isinstance(body, dict) else None
        if not isinstance(responses, list) or len(responses) != len(plans):
            raise UpstreamBadResponse("Elasticsearch returned an unexpected _msearch response")

        async def one(plan: SearchPlan, response: Any) -> tuple[Outcome, Timings]:
            if not plan.rerank:
                return Outcome("skipped", plan.skip_reason), Timings()
            return await self.rerank(plan, response, rid)

        results = await asyncio.gather(*(one(p, r) for p, r in zip(plans, responses, strict=True)))
        timings = Timings(
            model_s=max((t.model_s for _, t in results), default=0.0),
            queue_s=max((t.queue_s for _, t in results), default=0.0),
        )
        return Applied(overall([o for o, _ in results]), dumps(body), body, timings)


def _parse(raw: bytes, what: str) -> Any:
    try:
        return loads(raw)
    except ValueError as exc:
        raise UpstreamBadResponse(f"Elasticsearch returned {what}") from exc
