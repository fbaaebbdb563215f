"""Score a window of hits: cache, language gate, circuit breaker, budget, model.

:meth:`RerankEngine.score_hits` never raises for model trouble. It returns the scores, or
``None`` with an :class:`Outcome` that says why the ES order stands (the ``X-Rerank``
header). Only cancellation (the client went away) propagates, and it is not counted
against the model.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config import SidecarConfig
from sidecar.errors import BreakerOpen, Overloaded, RerankTimeout, RerankUnavailable
from sidecar.models.base import Scorer
from sidecar.rerank.breaker import AsyncBreaker
from sidecar.rerank.cache import ResponseCache, ScoreCache, ScoreKey
from sidecar.rerank.doc_text import DocTextResolver
from sidecar.rerank.language import LanguageGate
from sidecar.rerank.plan import SearchPlan

log = logging.getLogger("sidecar.rerank")


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str | None = None

    @property
    def header(self) -> str:
        return self.status if self.reason is None else f"{self.status}; reason={self.reason}"

    @property
    def label(self) -> str:
        return self.status if self.reason is None else f"{self.status}:{self.reason}"


APPLIED = Outcome("applied")
CACHED = Outcome("cached")


@dataclass
class Timings:
    model_s: float = 0.0
    queue_s: float = 0.0


@dataclass
class ScoredWindow:
    scores: list[float] | None
    outcome: Outcome
    timings: Timings


class RerankEngine:
    def __init__(self, config: SidecarConfig, scorer: Scorer) -> None:
        self.config = config
        self.scorer = scorer
        rc = config.rerank
        self.docs = DocTextResolver(rc)
        self.breaker = AsyncBreaker(rc.breaker.fail_max, rc.breaker.reset_timeout_s)
        self.scores = ScoreCache(rc.cache.max_entries, rc.cache.ttl_s, rc.cache.enabled)
        self.responses = ResponseCache(
            rc.response_cache.max_entries, rc.response_cache.ttl_s, rc.response_cache.enabled
        )
        self.gate = LanguageGate(())
        self._gate_ready = False

    def start_language_gate(self) -> None:
        """Called (in a thread) once the model is loaded and has declared its languages."""
        gate = LanguageGate(self.scorer.info.languages)
        gate.load()
        self.gate = gate
        self._gate_ready = True

    @property
    def ready(self) -> bool:
        """Model warm and language gate built: reranking can be applied."""
        return self._gate_ready and self.scorer.ready

    @property
    def model_name(self) -> str:
        return self.scorer.info.name

    def budget_s(self, index: str) -> float:
        entry = self.docs.entry(index) if index else None
        budget = entry.budget_ms if entry and entry.budget_ms else self.config.rerank.budget_ms
        return budget / 1000.0

    def instruction(self, plan: SearchPlan) -> str:
        return plan.instruction or self.config.model.instruction

    def texts(self, plan: SearchPlan, hits: Sequence[dict[str, Any]]) -> list[str]:
        out = []
        for hit in hits:
            spec = self.docs.spec(str(hit.get("_index", plan.index_hint)), plan.fields)
            out.append(spec.text(hit.get("_source")))
        return out

    async def score_hits(self, plan: SearchPlan, hits: Sequence[dict[str, Any]]) -> ScoredWindow:
        timings = Timings()
        if not hits:
            return ScoredWindow(None, Outcome("skipped", "no_hits"), timings)
        if not self.ready:
            return ScoredWindow(None, Outcome("skipped", "model_not_ready"), timings)
        if not self.gate.allows(plan.query_text):
            return ScoredWindow(None, Outcome("skipped", "unsupported_language"), timings)
        texts = self.texts(plan, hits)
        if not any(texts):
            return ScoredWindow(None, Outcome("skipped", "no_document_text"), timings)
        instruction = self.instruction(plan)
        keys: list[ScoreKey] = [
            ScoreCache.key(
                self.model_name,
                instruction,
                plan.query_text,
                str(h.get("_index", "")),
                str(h.get("_id", "")),
                t,
            )
            for h, t in zip(hits, texts, strict=True)
        ]
        cached = self.scores.get_many(keys)
        missing = [i for i, v in enumerate(cached) if v is None]
        if not missing:
            return ScoredWindow([float(v) for v in cached if v is not None], CACHED, timings)
        try:
            self.breaker.acquire()
        except BreakerOpen as exc:
            return ScoredWindow(None, Outcome("fallback", exc.reason), timings)
        budget = self.budget_s(plan.index_hint)
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(budget):
                result = await self.scorer.score(
                    plan.query_text, [texts[i] for i in missing], instruction, timeout=budget
                )
            fresh = result.scores
            if len(fresh) != len(missing) or not all(math.isfinite(s) for s in fresh):
                raise RerankUnavailable("model returned unusable scores")
        except asyncio.CancelledError:
            self.breaker.release()
            raise
        except (TimeoutError, RerankTimeout):
            self.breaker.failure()
            return ScoredWindow(None, Outcome("fallback", "timeout"), timings)
        except Overloaded:
            # Shedding load is the queue doing its job, not the model failing.
            self.breaker.release()
            return ScoredWindow(None, Outcome("fallback", "overloaded"), timings)
        except RerankUnavailable as exc:
            self.breaker.failure()
            log.warning("rerank failed (%s); serving ES order", exc.reason)
            return ScoredWindow(None, Outcome("fallback", exc.reason), timings)
        except Exception:
            # A backend bug must never break search: log it, count it, fall back.
            self.breaker.failure()
            log.exception("unexpected error from the reranker; serving ES order")
            return ScoredWindow(None, Outcome("fallback", "error"), timings)
        self.breaker.success()
        timings.model_s = result.model_s or (time.perf_counter() - t0)
        timings.queue_s = result.queue_s
        self.scores.put_many([keys[i] for i in missing], fresh)
        scores: list[float] = []
        it = iter(fresh)
        for v in cached:
            scores.append(float(v) if v is not None else float(next(it)))
        return ScoredWindow(scores, APPLIED, timings)
