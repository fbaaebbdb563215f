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
from sidecar.rerank.cpu_share import CpuShare
from sidecar.rerank.engine import Doc, RerankEngine, ScoredWindow, Timings
from sidecar.rerank.es_time import EsTimes
from sidecar.rerank.filter_path import FilterPath
from sidecar.rerank.index_config import IndexRules
from sidecar.rerank.msearch_answer import MsearchAnswer
from sidecar.rerank.outcome import SHADOWED, Outcome, overall
from sidecar.rerank.plan import SearchPlan, plan_search
from sidecar.rerank.render import compact, render
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
    #: ``body`` as the object it was serialized from; None for an ``_msearch`` answer
    #: whose untouched items were never decoded.
    document: Any
    timings: Timings


@dataclass(frozen=True)
class Held:
    """How long a search was held back for its client's CPU share (it comes off the
    budget), and whether for all of its budget: then nothing is left to rerank with, and
    the search goes to ES as the client sent it, its answer streamed (``cpu_share``)."""

    waited_s: float
    whole_budget: bool


CPU_SHARE = "cpu_share"


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
        self.cpu = CpuShare(config.rerank.load.client_cpu_share)

    async def hold(self, client: str, budget_s: float) -> Held:
        """Wait while ``client`` is over its share of the event loop's CPU, at most
        ``budget_s`` (a search is never slower than ES plus its budget)."""
        owed = self.cpu.delay(client)
        if owed <= 0:
            return Held(0.0, whole_budget=False)
        loop = asyncio.get_running_loop()
        start = loop.time()
        # The debt is paid at a known rate: there is no signal to wait for.
        await asyncio.sleep(min(owed, budget_s))
        # A busy loop wakes late: what was waited, not what was asked for, is the hold.
        return Held(loop.time() - start, whole_budget=owed >= budget_s)

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
        with self.cpu.metered(client):
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
        with self.cpu.metered(client):
            rewrite(
                response,
                plan,
                scored.scores,
                settings.score,
                self.engine.status(scored.outcome, scored),
            )
        return scored.outcome, scored.timings

    async def apply(
        self,
        plan: SearchPlan,
        raw: bytes,
        rid: str,
        client: str = "",
        waited_s: float = 0.0,
        held_s: float = 0.0,
    ) -> Applied | Reask:
        """Rerank ES's ``_search`` answer (``raw``, status 200); ``client`` waits its turn
        for the model; ``waited_s``: since the search arrived (beyond the usual, it comes
        off the budget); ``held_s`` of it the search was held back (:meth:`hold`)."""
        with self.cpu.metered(client):
            body = _parse(raw)
        if body is None or hits_of(body) is None:
            return Reask("unexpected_response")
        if self._window_refused(plan, body):
            return Reask(RESULT_WINDOW)
        late = self.es_times.excess(plan.index, waited_s - held_s) + held_s
        deadline = asyncio.get_running_loop().time() + max(0.0, plan.settings.budget_s - late)
        try:
            outcome, timings = await self.rerank(plan, body, rid, client, deadline)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rewriting a search response failed; ES's own answer is used")
            return Reask("rewrite_failed")
        with self.cpu.metered(client):
            return _written(body, raw, plan.filter_path, outcome, timings)

    async def apply_many(
        self,
        plans: Sequence[SearchPlan],
        raw: bytes,
        rid: str,
        filter_path: FilterPath | None = None,
        client: str = "",
        waited_s: float = 0.0,
        held_s: float = 0.0,
    ) -> Applied | Reask:
        """Rerank ES's ``_msearch`` answer: the sub-searches are scored concurrently, so
        the batching worker coalesces them into shared forward passes. They share one
        budget (the handler plans at most ``rerank.load.msearch_max_reranked`` of them)."""
        with self.cpu.metered(client):
            checked = self._check_many(plans, raw, filter_path)
        if isinstance(checked, Reask):
            return checked
        split, body, responses = checked
        budget_s = max((p.settings.budget_s for p in plans if p.rerank), default=0.0)
        index = next((p.index for p in plans if p.rerank), "")
        late = self.es_times.excess(f"_msearch {index}", waited_s - held_s) + held_s
        start = asyncio.get_running_loop().time() - late

        async def one(plan: SearchPlan, response: Any) -> tuple[Outcome, Timings]:
            # One budget for the request: every sub-search's ends with the request's.
            deadline = start + min(budget_s, plan.settings.budget_s)
            return await self.rerank(plan, response, rid, client, deadline)

        reranked = [i for i, plan in enumerate(plans) if plan.rerank]
        try:
            scored = await asyncio.gather(*(one(plans[i], responses[i]) for i in reranked))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rewriting an _msearch response failed; ES's own answer is used")
            return Reask("rewrite_failed")
        results = dict(zip(reranked, scored, strict=True))
        timings = Timings(
            model_s=max((t.model_s for _, t in scored), default=0.0),
            queue_s=max((t.queue_s for _, t in scored), default=0.0),
        )
        outcome = overall(
            [
                results[i][0] if i in results else Outcome("skipped", plan.skip_reason)
                for i, plan in enumerate(plans)
            ]
        )
        with self.cpu.metered(client):
            if split is None:
                return _written(body, raw, filter_path, outcome, timings)
            # An item ES answered with an error was not touched: it keeps ES's bytes.
            rewritten = {
                i: compact(responses[i]) for i, (o, _) in results.items() if o is not ES_ERROR
            }
            items = {i: data for i, data in rewritten.items() if data is not None}
            if len(items) < len(rewritten):
                return Reask("unserializable_response")
            return Applied(outcome, split.join(items), None, timings)

    def _check_many(
        self, plans: Sequence[SearchPlan], raw: bytes, filter_path: FilterPath | None
    ) -> tuple[MsearchAnswer | None, Any, list[Any]] | Reask:
        """ES's ``_msearch`` answer decoded (whole, or only the items to rerank) and
        checked: (the answer taken apart or None, the whole document or None, the items,
        None where not decoded); or why it cannot be given back rewritten."""
        # Without a filter_path to apply, only the items being reranked are decoded.
        split = MsearchAnswer.split(raw) if filter_path is None else None
        if split is not None:
            body: Any = None
            try:
                responses: Any = (
                    [split.item(i) if p.rerank else None for i, p in enumerate(plans)]
                    if len(split.items) == len(plans)
                    else None
                )
            except (ValueError, RecursionError):
                return Reask("unexpected_response")
        else:
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

        return split, body, responses


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
