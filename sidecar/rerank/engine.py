"""Score a window of hits: cache, language gate, circuit breaker, budget, model.

:meth:`RerankEngine.score` never raises for model trouble. It returns the scores, or
``None`` with an :class:`Outcome` that says why the ES order stands (the ``X-Rerank``
header). Only cancellation (the client went away) propagates, and it is not counted
against the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config import SidecarConfig
from sidecar.errors import BreakerOpen, Overloaded, RerankTimeout, RerankUnavailable
from sidecar.rerank.breaker import AsyncBreaker
from sidecar.rerank.cache import ResponseCache, ScoreCache, ScoreKey
from sidecar.rerank.language import LanguageGate
from sidecar.rerank.outcome import APPLIED, CACHED, Outcome
from sidecar.scoring.base import Scorer

log = logging.getLogger("sidecar.rerank")


@dataclass
class Timings:
    model_s: float = 0.0
    queue_s: float = 0.0


@dataclass(frozen=True)
class Doc:
    """One hit as the model sees it (index and id key the score cache)."""

    index: str
    id: str
    text: str


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
        self.breaker = AsyncBreaker(rc.breaker.fail_max, rc.breaker.reset_timeout_s)
        self.scores = ScoreCache.from_config(rc.cache)
        self.responses = ResponseCache.from_config(rc.response_cache, rc.extra_identity_headers)
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

    def status(self, outcome: Outcome, scored: ScoredWindow | None) -> dict[str, Any]:
        """The ``_rerank`` object of a response: what happened, and with which model."""
        status: dict[str, Any] = {"status": outcome.status}
        if outcome.reason:
            status["reason"] = outcome.reason
        if scored is not None and scored.scores is not None:
            status["model"] = self.model_name
            status["reranked"] = len(scored.scores)
        return status

    async def score(
        self, query: str, instruction: str | None, docs: Sequence[Doc], budget_s: float
    ) -> ScoredWindow:
        """Scores for ``docs`` in order, or why not. ``instruction`` None: the model's."""
        timings = Timings()
        if not docs:
            return ScoredWindow(None, Outcome("skipped", "no_hits"), timings)
        if not self.ready:
            return ScoredWindow(None, Outcome("skipped", "model_not_ready"), timings)
        if not self.gate.allows(query):
            return ScoredWindow(None, Outcome("skipped", "unsupported_language"), timings)
        texts = [d.text for d in docs]
        if not any(texts):
            return ScoredWindow(None, Outcome("skipped", "no_document_text"), timings)
        instruction = instruction or self.config.model.instruction
        keys: list[ScoreKey] = [
            self.scores.key_for(self.model_name, instruction, query, d.index, d.id, d.text)
            for d in docs
        ]
        cached = self.scores.get_many(keys)
        missing = [i for i, v in enumerate(cached) if v is None]
        if not missing:
            return ScoredWindow([float(v) for v in cached if v is not None], CACHED, timings)
        try:
            self.breaker.acquire()
        except BreakerOpen as exc:
            return ScoredWindow(None, Outcome("fallback", exc.reason), timings)
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(budget_s):
                result = await self.scorer.score(
                    query, [texts[i] for i in missing], instruction, timeout=budget_s
                )
            # Checked at the scorer boundary: one finite score per document.
            fresh = result.scores
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
