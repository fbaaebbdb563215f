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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
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
from sidecar.rerank.pages import PageOrders
from sidecar.rerank.plan import SearchPlan, Tracked, page_start, plan_search
from sidecar.rerank.query_text import TextField, scoped_fields
from sidecar.rerank.render import compact, render
from sidecar.rerank.respond import Served, hits_of, rewrite, served
from sidecar.rerank.shadow import ShadowRunner
from sidecar.rerank.windows import IndexFacts, mapped_text

log = logging.getLogger("sidecar.rerank")

ES_ERROR = skipped(Reason.ES_ERROR)
#: The most field mappings one search asks ES for (a query_string names a few; a longer
#: list is not what a user typed).
MAX_MAPPED_FIELDS = 32


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
class Page:
    """One search as served, for the query log: its page, what happened, hits reranked."""

    served: Served
    outcome: Outcome
    k: int = 0


@dataclass(frozen=True)
class Applied:
    """A rewritten response body and what happened to it."""

    outcome: Outcome
    body: bytes
    #: ``body`` as the object it was serialized from; None for an ``_msearch`` answer
    #: whose untouched items were never decoded.
    document: Any
    timings: Timings
    #: Each search as served, in order (with the query log on; else empty).
    pages: tuple[Page | None, ...] = ()


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
        #: Each index's learned ``max_result_window`` and text fields.
        self.windows = IndexFacts()
        self.pages = PageOrders.from_config(config, engine.shared)

    def plan(
        self,
        body: Any,
        params: Mapping[str, str],
        index: str,
        mode: ModeName,
        *,
        force_skip: Reason | None = None,
        tracked: Tracked | None = None,
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
            tracked=tracked,
            text_field=self.text_field(index),
        )

    def text_field(self, index: str) -> TextField:
        """Whether a field of ``index`` is text: one the model reads (``rerank.indices``,
        ``default_fields``), or one its mapping, as learned, says is text."""
        read = self.indices.text_fields(index)

        def text(name: str) -> bool:
            if any(fnmatchcase(f, name) for f in read):
                return True
            return self.windows.is_text(index, name) is True

        return text

    def unknown_fields(self, body: Any, params: Mapping[str, str], index: str) -> list[str]:
        """The fields a ``query_string`` of this search scopes terms to whose mapping is
        not known (at most ``MAX_MAPPED_FIELDS``): ES is asked for them before planning."""
        query = body.get("query") if isinstance(body, dict) else None
        names = scoped_fields(query, params.get("q"))
        read = self.indices.text_fields(index)
        unknown = [
            n
            for n in names
            if not any(fnmatchcase(f, n) for f in read) and self.windows.is_text(index, n) is None
        ]
        return unknown[:MAX_MAPPED_FIELDS]

    def learn_fields(self, index: str, names: Sequence[str], status: int, raw: bytes) -> None:
        """Remember ES's ``_mapping/field`` answer for ``names``: a field it does not map is
        not text. Only a 200 is remembered: a refusal (this client may not read the mapping)
        or an overloaded ES says nothing of the fields, and must not decide for every other
        client until it is forgotten; this search takes them as filters, the next asks
        again."""
        if status != 200:
            return
        try:
            body = loads(raw)
        except ValueError:
            return
        self.windows.learn_fields(index, mapped_text(body, names))

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
    ) -> tuple[Outcome, Timings, Page]:
        """Rerank one parsed search response in place (a ``_msearch`` item is one too)."""
        hits = hits_of(response)
        if hits is None or response.get("status", 200) != 200:
            return ES_ERROR, Timings(), Page(Served(start=plan.from_), ES_ERROR)
        with self.loop.metered(caller.client):
            docs = self.docs(plan, hits[: plan.window])
        settings = plan.settings
        deadline = caller.deadline.within(settings.budget_s)

        def score() -> Awaitable[ScoredWindow]:
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
            status = self.engine.status(SHADOWED, None)
            page = rewrite(response, plan, None, settings.score, status)
            return SHADOWED, Timings(), Page(page, SHADOWED)
        scored = await self._scored(plan, docs, score)
        with self.loop.metered(caller.client):
            status = self.engine.status(scored.outcome, scored)
            model = self.engine.model_name
            page = rewrite(response, plan, scored.scores, settings.score, status, model)
        k = len(scored.scores or ())
        return scored.outcome, scored.timings, Page(page, scored.outcome, k)

    async def _scored(
        self,
        plan: SearchPlan,
        docs: Sequence[Doc],
        score: Callable[[], Awaitable[ScoredWindow]],
    ) -> ScoredWindow:
        """The window scored, and the order served kept for the search's later pages; a
        later page continues the order its first page served (:mod:`sidecar.rerank.pages`)."""
        key = self.pages.key(plan.search_key)
        if key and plan.from_ > 0:
            # Waited for up to the call's own timeout, never cut at the deadline: a later
            # page continuing its first page is the promise, even on a busy replica.
            order = await self.pages.find(key, docs)
            if order is not None:
                return order.scored()
        scored = await score()
        if key:
            self.pages.keep(key, docs, scored)
        return scored

    def passed(self, plan: SearchPlan, raw: bytes) -> Applied | Reask:
        """ES's answer to a search that is not reranked, given back with what the query
        log needs (the search is tracked): its page, and ``ext.ubi.query_id``."""
        body = _parse(raw)
        if not isinstance(body, dict):
            return Reask(Reason.UNEXPECTED_RESPONSE)
        page = self._page_as_is(plan, body)
        return _written(body, raw, None, page.outcome, Timings(), plan, (page,))

    def _page_as_is(self, plan: SearchPlan, response: Any) -> Page:
        outcome = skipped(plan.skip_reason or Reason.NO_SEARCHES)
        if not _ok(response):
            outcome = ES_ERROR
        hits = hits_of(response) or []
        return Page(served(plan, hits, page_start(plan)), outcome)

    async def apply(self, plan: SearchPlan, raw: bytes, caller: Caller) -> Applied | Reask:
        """Rerank ES's ``_search`` answer (``raw``, status 200)."""
        with self.loop.metered(caller.client):
            body = _parse(raw)
        if body is None or hits_of(body) is None:
            return Reask(Reason.UNEXPECTED_RESPONSE)
        if self.windows.learn(plan.index, body, plan.es_size):
            return Reask(Reason.RESULT_WINDOW)
        try:
            outcome, timings, page = await self.rerank(plan, body, caller)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rewriting a search response failed; ES's own answer is used")
            return Reask(Reason.REWRITE_FAILED)
        with self.loop.metered(caller.client):
            return _written(body, raw, plan.filter_path, outcome, timings, plan, (page,))

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
        pages = self._pages(plans, responses, {i: page for i, (_, _, page) in results.items()})
        outcome = overall(
            [results[i][0] if i in results else skipped(p.skip_reason or Reason.NO_SEARCHES)
             for i, p in enumerate(plans)]
        )  # fmt: skip
        timings = Timings(
            model_s=max((t.model_s for _, t, _ in scored), default=0.0),
            queue_s=max((t.queue_s for _, t, _ in scored), default=0.0),
        )
        with self.loop.metered(caller.client):
            if split is None:
                for plan, response in zip(plans, responses, strict=True):
                    _tracked(response, plan)  # an item of the whole document, in place
                return _written(body, raw, filter_path, outcome, timings, None, tuple(pages))
            # An item ES answered with an error was not touched: it keeps ES's bytes (but
            # a tracked one carries its query_id).
            changed = [
                i
                for i, plan in enumerate(plans)
                if plan.tracked or (i in results and results[i][0] != ES_ERROR)
            ]
            rewritten = {i: compact(_tracked(responses[i], plans[i])) for i in changed}
            items = {i: data for i, data in rewritten.items() if data is not None}
            if len(items) < len(rewritten):
                return Reask(Reason.UNSERIALIZABLE_RESPONSE)
            return Applied(outcome, split.join(items), None, timings, tuple(pages))

    def _pages(
        self, plans: Sequence[SearchPlan], responses: list[Any], reranked: dict[int, Page]
    ) -> list[Page | None]:
        """Each sub-search as served: the reranked ones' pages, and (tracked) the others'."""
        return [
            reranked.get(i) or (self._page_as_is(p, r) if p.tracked and r is not None else None)
            for i, (p, r) in enumerate(zip(plans, responses, strict=True))
        ]

    def _check_many(
        self, plans: Sequence[SearchPlan], raw: bytes, filter_path: FilterPath | None
    ) -> tuple[MsearchAnswer | None, Any, list[Any]] | Reask:
        """ES's ``_msearch`` answer decoded (whole, or only the items to rerank) and
        checked: (the answer taken apart or None, the whole document or None, the items,
        None where not decoded); or why it cannot be given back rewritten."""
        # Without a filter_path to apply, only the items being reranked (or tracked by the
        # query log) are decoded.
        split = MsearchAnswer.split(raw) if filter_path is None else None
        body: Any = None
        if split is not None:
            try:
                responses: Any = (
                    [split.item(i) if p.rerank or p.tracked else None for i, p in enumerate(plans)]
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
    body: Any,
    raw: bytes,
    filter_path: FilterPath | None,
    outcome: Outcome,
    timings: Timings,
    plan: SearchPlan | None = None,
    pages: tuple[Page | None, ...] = (),
) -> Applied | Reask:
    document = filter_path.apply(body) if filter_path is not None else body
    if plan is not None:
        document = _tracked(document, plan)
    data = render(document, raw)
    if data is None:
        return Reask(Reason.UNSERIALIZABLE_RESPONSE)
    return Applied(outcome, data, document, timings, pages)


def _tracked(response: Any, plan: SearchPlan) -> Any:
    """A tracked search's answer carries its ``query_id`` (``ext.ubi``), as the UBI
    plugin's answers do."""
    if plan.tracked is None or not isinstance(response, dict):
        return response
    ext = response.get("ext")
    ext = ext if isinstance(ext, dict) else {}
    response["ext"] = {**ext, "ubi": {"query_id": plan.tracked.query_id}}
    return response
