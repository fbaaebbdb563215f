"""The rerank step, shared by ``_search`` and ``_msearch``.

Before ES: :meth:`RerankStep.plan` turns a search body and its rollout mode into a
:class:`~sidecar.rerank.plan.SearchPlan` (rerank it, or why not). After ES:
:meth:`RerankStep.apply` scores the window (or hands it to shadow mode), rewrites the
response and says what happened in an :class:`~sidecar.rerank.outcome.Outcome`; or, when
ES's answer to the rewritten request cannot be given to the client as rewritten (not JSON,
no hits, a result window the index refuses, a document too deep to write again), it says
:class:`Reask`: the handler then asks ES again with the client's own request and relays
that answer, so a widened page never reaches the client and the sidecar never answers 5xx
where ES would not. It knows nothing of HTTP: bodies in, bodies out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config import ModeName, SidecarConfig
from sidecar.jsonutil import loads
from sidecar.rerank.engine import Doc, RerankEngine, ScoredWindow, Timings
from sidecar.rerank.es_time import EsTimes
from sidecar.rerank.filter_path import FilterPath
from sidecar.rerank.index_config import IndexRules
from sidecar.rerank.outcome import SHADOWED, Outcome, overall
from sidecar.rerank.plan import SearchPlan, plan_search
from sidecar.rerank.render import render
from sidecar.rerank.respond import hits_of, rewrite
from sidecar.rerank.shadow import ShadowRunner
from sidecar.rerank.windows import ResultWindows

log = logging.getLogger("sidecar.rerank")

ES_ERROR = Outcome("skipped", "es_error")
RESULT_WINDOW = "result_window"


@dataclass(frozen=True)
class Applied:
    """A rewritten response body and what happened to it."""

    outcome: Outcome
    body: bytes
    #: ``body`` as the object it was serialized from.
    document: Any
    timings: Timings


@dataclass(frozen=True)
class Reask:
    """ES's answer to the rewritten request cannot go to the client: ask ES again with the
    client's own request, and say ``skipped; reason=<reason>``."""

    reason: str

    @property
    def outcome(self) -> Outcome:
        return Outcome("skipped", self.reason)


class RerankStep:
    def __init__(self, config: SidecarConfig, engine: RerankEngine, shadow: ShadowRunner) -> None:
        self.config = config
        self.engine = engine
        self.shadow = shadow
        self.indices = IndexRules(config.rerank)
        self.windows = ResultWindows()
        self.es_times = EsTimes()

    def plan(
        self,
        body: Any,
        params: Mapping[str, str],
        index: str,
        mode: ModeName,
        *,
        force_skip: str | None = None,
    ) -> SearchPlan:
        return plan_search(
            body,
            params,
            self.config.rerank,
            self.indices,
            index,
            mode,
            window_limit=self.windows.limit(index),
            force_skip=force_skip,
        )

    def refused(self, plan: SearchPlan, status: int, raw: bytes) -> bool:
        """Whether ES's error answer to a widened search is its result-window refusal (the
        limit is learned); the client's own page then gets ES's answer to it."""
        if status != 400 or not plan.rerank:
            return False
        try:
            body = loads(raw)
        except ValueError:
            return False
        return self.windows.learn(plan.index, body, plan.es_size)

    def docs(self, plan: SearchPlan, hits: Sequence[dict[str, Any]]) -> list[Doc]:
        out = []
        for hit in hits:
            spec = self.indices.doc_text(str(hit.get("_index", plan.index)), plan.fields)
            text = spec.text(hit.get("_source"))
            out.append(Doc(str(hit.get("_index", "")), str(hit.get("_id", "")), text))
        return out

    def _window_refused(self, plan: SearchPlan, response: Any) -> bool:
        """A widened search that ES answered with some shards (or, in ``_msearch``, the
        whole item) refusing the result window: its hits are incomplete."""
        return self.windows.learn(plan.index, response, plan.es_size)

    async def rerank(
        self,
        plan: SearchPlan,
        response: Any,
        rid: str,
        client: str = "",
        deadline: float | None = None,
    ) -> tuple[Outcome, Timings]:
        """Rerank one parsed search response in place (a ``_msearch`` item is one too).
        ``client`` waits its turn for the model; ``deadline`` is a shared budget's end."""
        hits = hits_of(response)
        if hits is None or response.get("status", 200) != 200:
            return ES_ERROR, Timings()
        docs = self.docs(plan, hits[: plan.window])
        settings = plan.settings

        def score() -> Any:
            return self.engine.score(
                plan.query_text,
                plan.instruction,
                docs,
                settings.budget_s,
                client=client,
                page_from=plan.from_,
                deadline=deadline,
            )

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

    async def apply(
        self, plan: SearchPlan, raw: bytes, rid: str, client: str = "", waited_s: float = 0.0
    ) -> Applied | Reask:
        """Rerank ES's ``_search`` answer (``raw``, status 200); ``client`` waits its turn
        for the model; ``waited_s``: since the search arrived (beyond the usual, it comes
        off the budget)."""
        body = _parse(raw)
        if body is None or hits_of(body) is None:
            return Reask("unexpected_response")
        if self._window_refused(plan, body):
            return Reask(RESULT_WINDOW)
        late = self.es_times.excess(plan.index, waited_s)
        deadline = asyncio.get_running_loop().time() + max(0.0, plan.settings.budget_s - late)
        try:
            outcome, timings = await self.rerank(plan, body, rid, client, deadline)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rewriting a search response failed; ES's own answer is used")
            return Reask("rewrite_failed")
        return _written(body, raw, plan.filter_path, outcome, timings)

    async def apply_many(
        self,
        plans: Sequence[SearchPlan],
        raw: bytes,
        rid: str,
        filter_path: FilterPath | None = None,
        client: str = "",
        waited_s: float = 0.0,
    ) -> Applied | Reask:
        """Rerank ES's ``_msearch`` answer: the sub-searches are scored concurrently, so
        the batching worker coalesces them into shared forward passes. They share one
        budget (the handler plans at most ``rerank.load.msearch_max_reranked`` of them)."""
        body = _parse(raw)
        responses = body.get("responses") if isinstance(body, dict) else None
        if not isinstance(responses, list) or len(responses) != len(plans):
            return Reask("unexpected_response")
        refused = [
            self._window_refused(plan, response)
            for plan, response in zip(plans, responses, strict=True)
            if plan.rerank
        ]
        if any(refused):
            return Reask(RESULT_WINDOW)
        if any(
            plan.rerank and hits_of(response) is None and _ok(response)
            for plan, response in zip(plans, responses, strict=True)
        ):
            return Reask("unexpected_response")
        if any(
            plan.rerank and isinstance(response, dict) and response.get("status") == 400
            for plan, response in zip(plans, responses, strict=True)
        ):
            # ES refused a rewritten body: its message is about the rewritten bytes, so the
            # client gets ES's answer to its own.
            return Reask("es_error")

        budget_s = max((p.settings.budget_s for p in plans if p.rerank), default=0.0)
        index = next((p.index for p in plans if p.rerank), "")
        late = self.es_times.excess(f"_msearch {index}", waited_s)
        start = asyncio.get_running_loop().time() - late

        async def one(i: int, plan: SearchPlan, response: Any) -> tuple[Outcome, Timings]:
            if not plan.rerank:
                return Outcome("skipped", plan.skip_reason), Timings()
            # One budget for the request: every sub-search's ends with the request's.
            deadline = start + min(budget_s, plan.settings.budget_s)
            return await self.rerank(plan, response, rid, client, deadline)

        try:
            results = await asyncio.gather(
                *(one(i, p, r) for i, (p, r) in enumerate(zip(plans, responses, strict=True)))
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rewriting an _msearch response failed; ES's own answer is used")
            return Reask("rewrite_failed")
        timings = Timings(
            model_s=max((t.model_s for _, t in results), default=0.0),
            queue_s=max((t.queue_s for _, t in results), default=0.0),
        )
        return _written(body, raw, filter_path, overall([o for o, _ in results]), timings)


def _ok(response: Any) -> bool:
    return isinstance(response, dict) and response.get("status", 200) == 200


def _parse(raw: bytes) -> Any:
    try:
        return loads(raw)
    except ValueError:
        return None


def _written(
    body: Any, raw: bytes, filter_path: FilterPath | None, outcome: Outcome, timings: Timings
) -> Applied | Reask:
    document = filter_path.apply(body) if filter_path is not None else body
    data = render(document, raw)
    if data is None:
        return Reask("unserializable_response")
    return Applied(outcome, data, document, timings)
