"""The rerank step, shared by ``_search`` and ``_msearch``.

Before ES: :meth:`RerankStep.plan` turns a search body and its rollout mode into a
:class:`~sidecar.rerank.plan.SearchPlan` (rerank it, or why not). After ES:
:meth:`RerankStep.apply` scores the window (or hands it to shadow mode), rewrites the
response and says what happened in an :class:`~sidecar.rerank.outcome.Outcome`; or, when
ES's answer to the rewritten request cannot be given to the client as rewritten (not JSON,
no hits, a result window the index refuses, a document too deep to write again), it says
:class:`Reask`: the client's own request then goes to ES and its answer is relayed, so a
widened page never reaches the client and the sidecar never answers 5xx where ES would not.
It knows nothing of HTTP: bodies in, bodies out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.admission.controller import Asker
from sidecar.admission.loop import LoopShare
from sidecar.config import ModeName, SidecarConfig
from sidecar.deadline import Deadline
from sidecar.jsonutil import loads
from sidecar.reasons import Reason
from sidecar.rerank.engine import Doc, RerankEngine, ScoredWindow, Timings
from sidecar.rerank.filter_path import FilterPath
from sidecar.rerank.index_config import IndexRules
from sidecar.rerank.msearch_answer import MsearchAnswer
from sidecar.rerank.outcome import SHADOWED, Outcome, overall, skipped
from sidecar.rerank.plan import SearchPlan, plan_search
from sidecar.rerank.render import compact, render
from sidecar.rerank.respond import hits_of, rewrite
from sidecar.rerank.shadow import ShadowRunner
from sidecar.rerank.windows import ResultWindows

log = logging.getLogger("sidecar.rerank")

ES_ERROR = skipped(Reason.ES_ERROR)


@dataclass(frozen=True)
class Caller:
    """Who a rerank is for (the client that waits its turn for the model, and its request)
    and the request's deadline."""

    asker: Asker
    deadline: Deadline

    @property
    def client(self) -> str:
        return self.asker.client

    @property
    def request_id(self) -> str:
        return self.asker.request


@dataclass(frozen=True)
class Applied:
    """A rewritten response body and what happened to it."""

    outcome: Outcome
    body: bytes
    #: ``body`` as the object it was serialized from; None for an ``_msearch`` answer
    #: whose untouched items were never decoded.
    document: Any
    timings: Timings


@dataclass(frozen=True)
class Reask:
    """ES's answer to the rewritten request cannot go to the client: ask ES again with the
    client's own request, and say ``skipped; reason=<reason>``."""

    reason: Reason

    @property
    def outcome(self) -> Outcome:
        return skipped(self.reason)


class RerankStep:
    def __init__(
        self,
        config: SidecarConfig,
        engine: RerankEngine,
        shadow: ShadowRunner,
        loop: LoopShare,
    ) -> None:
        self.config = config
        self.engine = engine
        self.shadow = shadow
        self.loop = loop
        self.indices = IndexRules(config.rerank, config.tuning.limits.max_chars_per_field)
        self.windows = ResultWindows()

    def plan(
        self,
        body: Any,
        params: Mapping[str, str],
        index: str,
        mode: ModeName,
        *,
        force_skip: Reason | None = None,
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
            limits=self.config.tuning.limits,
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

    async def rerank(
        self, plan: SearchPlan, response: Any, caller: Caller
    ) -> tuple[Outcome, Timings]:
        """Rerank one parsed search response in place (a ``_msearch`` item is one too)."""
        hits = hits_of(response)
        if hits is None or response.get("status", 200) != 200:
            return ES_ERROR, Timings()
        with self.loop.metered(caller.client):
            docs = self.docs(plan, hits[: plan.window])
        settings = plan.settings
        deadline = caller.deadline.within(settings.budget_s)

        def score() -> Any:
            return self.engine.score(
                plan.query_text,
                plan.instruction,
                docs,
                deadline,
                asker=caller.asker,
                page_from=plan.from_,
            )

        if plan.mode == "shadow":
            self.shadow.submit(score, caller.request_id)
            rewrite(response, plan, None, settings.score, self.engine.status(SHADOWED, None))
            return SHADOWED, Timings()
        scored: ScoredWindow = await score()
        with self.loop.metered(caller.client):
            status = self.engine.status(scored.outcome, scored)
            rewrite(response, plan, scored.scores, settings.score, status)
        return scored.outcome, scored.timings

    async def apply(self, plan: SearchPlan, raw: bytes, caller: Caller) -> Applied | Reask:
        """Rerank ES's ``_search`` answer (``raw``, status 200)."""
        with self.loop.metered(caller.client):
            body = _parse(raw)
        if body is None or hits_of(body) is None:
            return Reask(Reason.UNEXPECTED_RESPONSE)
        if self.windows.learn(plan.index, body, plan.es_size):
            return Reask(Reason.RESULT_WINDOW)
        try:
            outcome, timings = await self.rerank(plan, body, caller)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rewriting a search response failed; ES's own answer is used")
            return Reask(Reason.REWRITE_FAILED)
        with self.loop.metered(caller.client):
            return _written(body, raw, plan.filter_path, outcome, timings)

    async def apply_many(
        self,
        plans: Sequence[SearchPlan],
        raw: bytes,
        caller: Caller,
        filter_path: FilterPath | None = None,
    ) -> Applied | Reask:
        """Rerank ES's ``_msearch`` answer: the sub-searches are scored concurrently, so
        the batching worker coalesces them into shared forward passes. They share the
        request's one deadline (``rerank.msearch_max_reranked`` of them at most)."""
        with self.loop.metered(caller.client):
            checked = self._check_many(plans, raw, filter_path)
        if isinstance(checked, Reask):
            return checked
        split, body, responses = checked
        reranked = [i for i, plan in enumerate(plans) if plan.rerank]
        try:
            scored = await asyncio.gather(
                *(self.rerank(plans[i], responses[i], caller) for i in reranked)
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rewriting an _msearch response failed; ES's own answer is used")
            return Reask(Reason.REWRITE_FAILED)
        results = dict(zip(reranked, scored, strict=True))
        outcome = overall(
            [results[i][0] if i in results else skipped(p.skip_reason or Reason.NO_SEARCHES)
             for i, p in enumerate(plans)]
        )  # fmt: skip
        timings = Timings(
            model_s=max((t.model_s for _, t in scored), default=0.0),
            queue_s=max((t.queue_s for _, t in scored), default=0.0),
        )
        with self.loop.metered(caller.client):
            if split is None:
                return _written(body, raw, filter_path, outcome, timings)
            # An item ES answered with an error was not touched: it keeps ES's bytes.
            rewritten = {i: compact(responses[i]) for i, (o, _) in results.items() if o != ES_ERROR}
            items = {i: data for i, data in rewritten.items() if data is not None}
            if len(items) < len(rewritten):
                return Reask(Reason.UNSERIALIZABLE_RESPONSE)
            return Applied(outcome, split.join(items), None, timings)

    def _check_many(
        self, plans: Sequence[SearchPlan], raw: bytes, filter_path: FilterPath | None
    ) -> tuple[MsearchAnswer | None, Any, list[Any]] | Reask:
        """ES's ``_msearch`` answer decoded (whole, or only the items to rerank) and
        checked: (the answer taken apart or None, the whole document or None, the items,
        None where not decoded); or why it cannot be given back rewritten."""
        # Without a filter_path to apply, only the items being reranked are decoded.
        split = MsearchAnswer.split(raw) if filter_path is None else None
        body: Any = None
        if split is not None:
            try:
                responses: Any = (
                    [split.item(i) if p.rerank else None for i, p in enumerate(plans)]
                    if len(split.items) == len(plans)
                    else None
                )
            except (ValueError, RecursionError):
                return Reask(Reason.UNEXPECTED_RESPONSE)
        else:
            body = _parse(raw)
            responses = body.get("responses") if isinstance(body, dict) else None
        if not isinstance(responses, list) or len(responses) != len(plans):
            return Reask(Reason.UNEXPECTED_RESPONSE)
        reason = self._item_problem(plans, responses)
        return Reask(reason) if reason is not None else (split, body, responses)

    def _item_problem(self, plans: Sequence[SearchPlan], responses: list[Any]) -> Reason | None:
        """Why the reranked items of an ``_msearch`` answer cannot be given back."""
        pairs = [(p, r) for p, r in zip(plans, responses, strict=True) if p.rerank]
        if any([self.windows.learn(p.index, r, p.es_size) for p, r in pairs]):
            return Reason.RESULT_WINDOW
        if any(hits_of(r) is None and _ok(r) for _, r in pairs):
            return Reason.UNEXPECTED_RESPONSE
        if any(isinstance(r, dict) and r.get("status") == 400 for _, r in pairs):
            # ES refused a rewritten body: its message is about the rewritten bytes, so the
            # client gets ES's answer to its own.
            return Reason.ES_ERROR
        return None


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
        return Reask(Reason.UNSERIALIZABLE_RESPONSE)
    return Applied(outcome, data, document, timings)
