"""``_msearch``: each sub-search is rolled out and planned on its own by the rerank step;
ES answers them all at once; the step reranks the ones planned for it.

What ES receives is the client's payload byte for byte except the bodies the plans rewrite
(a ``rerank`` object removed, a page widened): every header line, blank line and untouched
body keeps its bytes. A body that cannot be rewritten faithfully (a repeated key, nesting
past what the sidecar writes) is sent as the client wrote it, so ES answers that search as
it would directly. ``filter_path`` is applied by the sidecar when any search is reranked;
an answer that cannot be given back as rewritten is asked for again with the client's own
payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sidecar.admission.controller import Asker
from sidecar.admission.loop import LoopShare
from sidecar.config import SidecarConfig
from sidecar.deadline import Deadline, UsualEsTime
from sidecar.http.body import NdjsonLines, has_duplicate_keys
from sidecar.reasons import Reason
from sidecar.rerank.filter_path import FilterPath, parse_filter_path
from sidecar.rerank.outcome import overall, skipped
from sidecar.rerank.plan import SearchPlan
from sidecar.rerank.render import compact
from sidecar.rerank.rollout import Decision, Rollout
from sidecar.rerank.step import ES_ERROR, Applied, Caller, Reask, RerankStep
from sidecar.search.call import Relay, Reply, Result, SearchCall, indices_of, other_format
from sidecar.ubi.search import Ask, Served, UbiSearch
from sidecar.upstream import BufferedResponse, EsRequest


class Service(Protocol):
    """What ``_msearch`` uses of the search service (:mod:`sidecar.search.service`)."""

    config: SidecarConfig
    rollout: Rollout
    step: RerankStep
    loop: LoopShare
    usual: UsualEsTime
    ubi: UbiSearch | None

    def decoded(self, call: SearchCall) -> bytes | Reason | None: ...

    async def fetch(self, call: SearchCall, req: EsRequest) -> BufferedResponse | Relay: ...

    async def learn_fields(self, call: SearchCall, body: Any, index: str | None = None) -> None: ...

    def written(
        self,
        call: SearchCall,
        es_resp: BufferedResponse,
        applied: Applied | Reask,
        caller: Caller,
        cache_key: str = "",
    ) -> Result: ...


def _header_indices(header: Any, path_index: str) -> str:
    if isinstance(header, dict):
        value = header.get("index")
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
    return path_index


@dataclass(frozen=True)
class Planned:
    """Every sub-search planned: the plans, the bodies rewritten (by search), and the
    client's ``filter_path`` (applied by the sidecar when any search is reranked)."""

    plans: list[SearchPlan]
    bodies: dict[int, bytes]
    filter_path: FilterPath | None
    #: Each sub-search's rollout decision, and what its ``ext.ubi`` asked (query log on).
    decisions: list[Decision] = field(default_factory=list)
    asks: list[Ask] = field(default_factory=list)
    #: The client's own bodies, by search, where ``ext.ubi`` was taken out of them.
    sent: dict[int, bytes] = field(default_factory=dict)

    @property
    def reranks(self) -> bool:
        return any(plan.rerank for plan in self.plans)


class MsearchService:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def msearch(self, call: SearchCall) -> Result:
        service = self.service
        if call.body is None:
            return Relay(call.as_sent, skipped(Reason.NO_BODY))
        data = service.decoded(call)
        if data is None or isinstance(data, Reason):
            return Relay(call.as_sent, skipped(Reason.ENCODED_BODY))
        key = call.client
        with service.loop.metered(key):
            payload = NdjsonLines.parse(data)
            if payload is None:
                return Relay(call.as_sent, skipped(Reason.UNPARSED_BODY))
        for header, body in payload.pairs[: service.config.rerank.msearch_max_reranked]:
            # Which fields the sub-searches' query_strings scope words to are text (asked
            # of ES once per index and field, as for a _search that may be reranked).
            index = _header_indices(header, call.index)
            if service.rollout.decide(call.who, indices_of(index)).mode != "off":
                await service.learn_fields(call, body, index)
        with service.loop.metered(key):
            planned = self._plan(call, payload)
        if planned.sent:
            # ES has no ext.ubi: "the client's own request" goes without it.
            call = replace(call, sent_body=payload.replaced(planned.sent))
        result = await self._answered(call, payload, planned)
        if service.ubi is not None:
            self._record(service.ubi, planned, result)
        return result

    async def _answered(self, call: SearchCall, payload: NdjsonLines, planned: Planned) -> Result:
        service, key = self.service, call.client
        if not planned.reranks and not planned.asks:
            return self._unranked(call, payload, planned)
        budgets = [plan.settings.budget_s for plan in planned.plans if plan.rerank]
        deadline = Deadline(max(budgets, default=0.0), arrived=call.arrived)
        caller = Caller(Asker(key, call.trace.request_id), deadline)
        if budgets and await service.loop.hold(key, caller.deadline):
            # Nothing is left to rerank with: ES's answer to the searches as sent.
            held = self._plan(call, payload, Reason.CPU_SHARE)
            if not held.asks:
                return self._unranked(call, payload, held)
            planned = held
        return await self._reranked(call, payload, planned, caller)

    def _record(self, ubi: UbiSearch, planned: Planned, result: Result) -> None:
        """Log every sub-search's page (the query log is on)."""
        pages = result.pages if isinstance(result, Reply) else ()
        model = self.service.step.engine.model_name
        for i, (plan, ask) in enumerate(zip(planned.plans, planned.asks, strict=True)):
            decision = planned.decisions[i]
            page = pages[i] if i < len(pages) else None
            outcome = result.outcome if page is None else page.outcome
            ubi.record(
                ask, plan.query_text, Served(decision.mode, decision.rule, model), page, outcome
            )

    async def _reranked(
        self, call: SearchCall, payload: NdjsonLines, planned: Planned, caller: Caller
    ) -> Result:
        service = self.service
        shape = planned.filter_path
        drop = ("filter_path",) if shape is not None else ()
        forwarded = (
            EsRequest.rewritten(call, payload.replaced(planned.bodies), drop)
            if planned.bodies
            else call.as_sent
        )
        answer = await service.fetch(call, forwarded)
        if isinstance(answer, Relay):
            return answer
        try:
            if answer.status != 200:
                return Reply(answer.response(), ES_ERROR)
            index = next((p.index for p in planned.plans if p.rerank), "")
            caller.deadline.es_answered(service.usual, f"_msearch {index}")
            limit = service.config.tuning.es.max_response_bytes
            with service.loop.metered(caller.client):
                answer_bytes = answer.decoded(limit)
            applied = await service.step.apply_many(
                planned.plans, answer_bytes, caller, filter_path=shape if drop else None
            )
            return service.written(call, answer, applied, caller)
        finally:
            answer.release()

    def _unranked(self, call: SearchCall, payload: NdjsonLines, planned: Planned) -> Result:
        """Nothing to rerank: ES's answer is streamed back, never held in memory."""
        forwarded = (
            EsRequest.rewritten(call, payload.replaced(planned.bodies))
            if planned.bodies
            else call.as_sent
        )
        outcomes = [skipped(plan.skip_reason or Reason.NO_SEARCHES) for plan in planned.plans]
        return Relay(forwarded, overall(outcomes))

    def _plan(
        self,
        call: SearchCall,
        payload: NdjsonLines,
        force_skip: Reason | None = None,
    ) -> Planned:
        """Every sub-search planned (``force_skip``: none reranked, for that reason)."""
        service = self.service
        force = force_skip or (Reason.FORMAT if other_format(call) else None)
        raw_filter = call.params.get("filter_path")
        shape = parse_filter_path(raw_filter) if raw_filter else None
        if shape is not None and not shape.wants_below(("responses", "hits", "hits")):
            force = force or Reason.FILTER_PATH  # the client does not want hits
        plans: list[SearchPlan] = []
        bodies: dict[int, bytes] = {}
        decisions: list[Decision] = []
        asks: list[Ask] = []
        sent: dict[int, bytes] = {}
        allowed, reranking = service.config.rerank.msearch_max_reranked, 0
        for i, (header, body) in enumerate(payload.pairs):
            index = _header_indices(header, call.index)
            decisions.append(service.rollout.decide(call.who, indices_of(index)))
            tracked = None
            if service.ubi is not None:
                taken, ask = service.ubi.take(body, call.client, call.headers)
                if taken is not body:
                    sent[i] = compact(taken) or payload.body_line(i)
                body, tracked = taken, ask.tracked
                asks.append(ask)
            # Past the cap a sub-search is not widened either: ES answers it as sent.
            capped = Reason.MSEARCH_LIMIT if reranking >= allowed else None
            plan = service.step.plan(
                body, {}, index, decisions[-1].mode, force_skip=force or capped, tracked=tracked
            )
            reranking += plan.rerank
            if plan.rewrites_body and plan.body is not None:
                new = compact(plan.body)
                if new is None or has_duplicate_keys(payload.body_line(i)):
                    # The client's own line: ES answers it as it would directly.
                    reason = Reason.UNSERIALIZABLE_BODY if new is None else Reason.DUPLICATE_KEYS
                    plan = replace(plan, skip_reason=reason, rewrites_body=False, body=None)
                else:
                    bodies[i] = new
            plans.append(plan)
        return Planned(plans, bodies, shape, decisions, asks, sent)
