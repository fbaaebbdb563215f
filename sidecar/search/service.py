"""The search service: the one entry point for ``_search`` and ``_msearch``.

For each search it decides the rollout mode, plans it with the rerank step, holds a client
that is over its share of the event loop back, asks ES (through the response cache),
lets the step rerank and rewrite ES's answer, and says what the handler is to write: ES's
answer streamed (:class:`~sidecar.search.call.Relay`) or the rewritten one
(:class:`~sidecar.search.call.Reply`).

Anything unexpected on the way means "ES order", never an error that ES itself would not
have produced: a body the sidecar cannot rewrite faithfully (duplicate keys, nesting past
what it can write) reaches ES as the client's bytes; an answer it cannot give back as
rewritten (a result window the index refuses, not JSON, too deep to write) is asked for
again with the client's own request and relayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from sidecar.admission.controller import Asker
from sidecar.admission.loop import LoopShare
from sidecar.config import ModeName, SidecarConfig
from sidecar.deadline import Deadline, UsualEsTime
from sidecar.errors import SidecarError, UpstreamResponseTooLarge
from sidecar.http.body import decode_body, has_duplicate_keys
from sidecar.jsonutil import loads
from sidecar.reasons import Reason
from sidecar.rerank.outcome import CACHED, skipped
from sidecar.rerank.plan import SearchPlan, Tracked
from sidecar.rerank.render import compact
from sidecar.rerank.rollout import Rollout
from sidecar.rerank.step import ES_ERROR, Applied, Caller, Reask, RerankStep
from sidecar.search.call import Relay, Reply, Result, SearchCall, indices_of, other_format
from sidecar.search.msearch import MsearchService
from sidecar.search.responses import ResponseStore
from sidecar.ubi.search import Served, UbiSearch
from sidecar.upstream import BufferedResponse, BufferFull, EsClient, EsRequest
from sidecar.upstream.wire import end_to_end_headers

log = logging.getLogger("sidecar.search")


class SearchService:
    def __init__(
        self,
        config: SidecarConfig,
        es: EsClient,
        rollout: Rollout,
        step: RerankStep,
        responses: ResponseStore,
        loop: LoopShare,
        ubi: UbiSearch | None = None,
    ) -> None:
        self.config = config
        self.es = es
        self.rollout = rollout
        self.step = step
        self.responses = responses
        self.loop = loop
        #: The query log (None: ``ubi.enabled`` is off).
        self.ubi = ubi
        self.usual = UsualEsTime()
        self.msearch = MsearchService(self)

    def decoded(self, call: SearchCall) -> bytes | Reason | None:
        """The body without its Content-Encoding (bounded), or why it cannot be read."""
        if call.body is None:
            return None
        limit = self.config.tuning.http.max_body_bytes
        data = decode_body(call.body, call.headers.get("Content-Encoding"), limit)
        return Reason.ENCODED_BODY if data is None else data

    async def search(self, call: SearchCall) -> Result:
        """A ``_search``: reranked, or ES's answer to it streamed, with the reason; and,
        with the query log on, its page logged."""
        decision = self.rollout.decide(call.who, indices_of(call.index))
        call.trace.rule, call.trace.index = decision.rule, call.index
        data = self.decoded(call)
        if isinstance(data, Reason):
            return Relay(call.as_sent, skipped(data))
        quick_off = self.ubi is None and decision.mode == "off"
        if quick_off and (data is None or b'"rerank"' not in data):
            return Relay(call.as_sent, skipped(Reason.ROLLOUT_OFF))
        try:
            body = loads(data) if data and data.strip() else None
        except ValueError:
            # Not JSON: ES answers its own 400 for it, exactly as without the sidecar.
            return Relay(call.as_sent, skipped(Reason.UNPARSED_BODY))
        if self.ubi is None:
            return await self._search(call, data, body, decision.mode)
        taken, ask = self.ubi.take(body, call.client, call.headers)
        if taken is not body:
            # ES has no ext.ubi: "the client's own request" goes without it.
            call = replace(call, sent_body=compact(taken))
        result = await self._search(call, data, taken, decision.mode, ask.tracked)
        page = result.pages[0] if isinstance(result, Reply) and result.pages else None
        served = Served(decision.mode, decision.rule, self.step.engine.model_name)
        self.ubi.record(ask, call.trace.query, served, page, result.outcome)
        return result

    async def _search(
        self,
        call: SearchCall,
        data: bytes | None,
        body: Any,
        mode: ModeName,
        tracked: Tracked | None = None,
    ) -> Result:
        force = Reason.FORMAT if other_format(call) else None
        if mode != "off" and force is None:
            await self.learn_fields(call, body)
        plan = self.step.plan(
            body, call.params, call.index, mode, force_skip=force, tracked=tracked
        )
        call.trace.query = plan.query_text
        if plan.rewrites_body and data is not None and has_duplicate_keys(data):
            # ES refuses a body with a repeated key; the sidecar's parse kept only the last
            # one. ES gets the client's bytes and answers them.
            return Relay(call.as_sent, skipped(Reason.DUPLICATE_KEYS))
        if not plan.rerank:
            return await self._unranked(call, plan)
        deadline = Deadline(plan.settings.budget_s, arrived=call.arrived)
        caller = Caller(Asker(call.client, call.trace.request_id), deadline)
        if await self.loop.hold(caller.client, caller.deadline):
            # Nothing is left to rerank with: ES's answer to the search as sent, streamed.
            replan = self.step.plan(
                body, call.params, call.index, mode, force_skip=Reason.CPU_SHARE, tracked=tracked
            )
            return await self._unranked(call, replan)
        return await self._reranked(call, plan, caller)

    async def learn_fields(self, call: SearchCall, body: Any, index: str | None = None) -> None:
        """Ask ES which of the fields this search's ``query_string`` scopes words to are
        text, when that is not known yet (words in a text field are query text; terms on
        other fields are filters). The client's own credentials ask, so nothing is learned
        that the client may not read; when ES cannot be asked, the search is planned with
        what is known (such terms count as filters) and nothing is remembered. ``index``:
        an ``_msearch`` sub-search's (its header's, else the path's)."""
        params: Mapping[str, str] = call.params if index is None else {}
        index = call.index if index is None else index
        names = self.step.unknown_fields(body, params, index)
        if not names:
            return
        where = f"/{quote(index, safe=',*')}" if index else ""
        path = f"{where}/_mapping/field/{quote(','.join(names), safe=',*')}"
        headers = end_to_end_headers(call.headers)
        for name in ("Content-Length", "Content-Type", "Content-Encoding"):
            headers.popall(name, None)
        try:
            answer = await self.es.fetch(EsRequest("GET", path, headers, None), client=call.client)
        except asyncio.CancelledError:
            raise
        except (SidecarError, BufferFull) as exc:
            log.debug("the mapping of %s could not be read: %s", call.index, exc)
            return
        try:
            raw = answer.decoded(self.config.tuning.es.max_response_bytes)
        except SidecarError:
            raw = b""
        finally:
            answer.release()
        self.step.learn_fields(index, names, answer.status, raw)

    async def _unranked(self, call: SearchCall, plan: SearchPlan) -> Result:
        """A search that is not reranked: ES gets the client's request but for the
        sidecar's own ``rerank`` object (and ``ext.ubi``), and its answer is streamed; or,
        tracked by the query log, read to log its page and given back with its
        ``query_id``."""
        outcome = skipped(plan.skip_reason or Reason.NO_SEARCHES)
        request = call.as_sent
        if plan.rewrites_body and plan.body is not None:
            data = compact(plan.body)
            if data is None:
                return Relay(call.as_sent, skipped(Reason.UNSERIALIZABLE_BODY))
            request = EsRequest.rewritten(call, data)
        if plan.tracked is None:
            return Relay(request, outcome)
        answer = await self.fetch(call, request)
        if isinstance(answer, Relay):
            return answer
        try:
            if answer.status != 200:
                return Reply(answer.response(), outcome)
            limit = self.config.tuning.es.max_response_bytes
            passed = self.step.passed(plan, answer.decoded(limit))
            if isinstance(passed, Reask):
                return Reply(answer.response(), outcome)
            return Reply(answer.response(passed.body), outcome, passed.pages)
        finally:
            answer.release()

    async def _reranked(self, call: SearchCall, plan: SearchPlan, caller: Caller) -> Result:
        data = compact(plan.body) if plan.body is not None else None
        if plan.body is not None and data is None:
            return Relay(call.as_sent, skipped(Reason.UNSERIALIZABLE_BODY))
        cache_key = ""
        # A tracked search's answer is its own (its query_id): never cached.
        if plan.mode == "on" and plan.tracked is None:
            cache_key = self.responses.key(call, plan.mode)
            hit = await self.responses.hit(call, cache_key)
            if hit is not None:
                return Reply(hit, CACHED)
        rewritten = EsRequest.rewritten(call, data, plan.drop_params, plan.set_params)
        answer = await self.fetch(call, rewritten)
        if isinstance(answer, Relay):
            return answer
        try:
            return await self._answer(call, plan, answer, caller, cache_key)
        finally:
            answer.release()

    async def fetch(self, call: SearchCall, req: EsRequest) -> BufferedResponse | Relay:
        """ES's whole answer to ``req``; or, when it is too large to hold (alone or with
        the answers held already), ES's answer to the client's own request, streamed (a
        502 ES would not give is never sent)."""
        try:
            answer = await self.es.fetch(req, client=call.client)
        except (BufferFull, UpstreamResponseTooLarge):
            return Relay(call.as_sent, skipped(Reason.MEMORY))
        call.trace.es_s = answer.elapsed_s
        return answer

    async def _answer(
        self,
        call: SearchCall,
        plan: SearchPlan,
        es_resp: BufferedResponse,
        caller: Caller,
        cache_key: str,
    ) -> Result:
        limit = self.config.tuning.es.max_response_bytes
        if es_resp.status != 200:
            if self.step.refused(plan, es_resp.status, es_resp.decoded(limit)):
                # The index's max_result_window is below the widened page: the client's
                # own page gets ES's own answer.
                return Relay(call.as_sent, skipped(Reason.RESULT_WINDOW))
            if es_resp.status == 400:
                # A refusal of the rewritten body (its messages point at byte positions in
                # it): the client gets ES's refusal of its own bytes.
                return Relay(call.as_sent, ES_ERROR)
            # ES said no: its answer goes back untouched and the model is not called.
            return Reply(es_resp.response(), ES_ERROR)
        # What ES took is credited to the deadline, up to its usual time for the index.
        caller.deadline.es_answered(self.usual, plan.index)
        with self.loop.metered(caller.client):
            answer_bytes = es_resp.decoded(limit)
        applied = await self.step.apply(plan, answer_bytes, caller)
        return self.written(call, es_resp, applied, caller, cache_key)

    def written(
        self,
        call: SearchCall,
        es_resp: BufferedResponse,
        applied: Applied | Reask,
        caller: Caller,
        cache_key: str = "",
    ) -> Result:
        """The rewritten answer (kept in the response cache under ``cache_key``)."""
        if isinstance(applied, Reask):
            return Relay(call.as_sent, applied.outcome)
        call.trace.model_s, call.trace.queue_s = applied.timings.model_s, applied.timings.queue_s
        with self.loop.metered(caller.client):
            out = es_resp.response(applied.body)  # compressed as ES compressed its own
        if cache_key:
            self.responses.put(cache_key, out, applied)
        return Reply(out, applied.outcome, applied.pages)
