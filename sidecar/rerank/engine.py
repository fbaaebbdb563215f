"""Score a window of hits: look in the score cache, ask the admission controller, run the
grant, fill the cache.

:meth:`RerankEngine.score` never raises for model trouble. It returns the scores of the
longest prefix of the window it could score, or ``None`` with an :class:`Outcome` that
says why ES's order stands. Only cancellation (the client went away) propagates, and it is
not counted against the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sidecar.admission.controller import (
    AdmissionController,
    Answers,
    Asker,
    Refusal,
    Timings,
    Window,
)
from sidecar.config import SidecarConfig
from sidecar.deadline import Deadline
from sidecar.reasons import Reason
from sidecar.rerank.cache import ResponseCache, ScoreCache, ScoreKey
from sidecar.rerank.language import LanguageGate
from sidecar.rerank.outcome import APPLIED, CACHED, Outcome
from sidecar.scoring.base import Scorer, ScoreResult
from sidecar.scoring.slot import ModelState, ScorerSlot
from sidecar.shared import SharedStore

__all__ = ["Doc", "RerankEngine", "ScoredWindow", "Timings"]

#: Who asks when nobody in particular does (a test, a tool).
NOBODY = Asker("", "")


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
    timings: Timings = field(default_factory=Timings)


@dataclass
class _Cached:
    """A window as the score cache has it: its keys, the scores found, the cached prefix."""

    keys: list[ScoreKey]
    scores: list[float | None]

    @property
    def missing(self) -> list[bool]:
        return [v is None for v in self.scores]

    @property
    def have(self) -> int:
        return _prefix(self.scores)

    def served(self, have: int, timings: Timings | None = None) -> ScoredWindow:
        """The first ``have`` scores, as a cache hit."""
        outcome = CACHED if have == len(self.scores) else Outcome("cached", window=have)
        return ScoredWindow(_floats(self.scores[:have]), outcome, timings or Timings())


class RerankEngine:
    def __init__(
        self,
        config: SidecarConfig,
        scorer: Scorer,
        admission: AdmissionController,
        shared: SharedStore | None = None,
    ) -> None:
        self.config = config
        self.scorer = scorer
        self.admission = admission
        #: The store every replica shares (``shared.url``); None: this replica's memory.
        self.shared = shared
        limits = config.tuning.limits
        self.scores = ScoreCache.from_config(config.rerank.cache, limits, shared)
        self.responses = ResponseCache.from_config(
            config.rerank.response_cache, config.rerank.extra_identity_headers, limits, shared
        )
        self.languages = LanguageGate(())
        self._languages_ready = False
        #: Set once the model has been loaded and warmed (and the language gate built).
        self.warmed = asyncio.Event()

    def start_language_gate(self) -> None:
        """Called (in a thread) once the model is loaded and has declared its languages."""
        languages = LanguageGate(self.scorer.info.languages)
        languages.load()
        self.languages = languages
        self._languages_ready = True

    @property
    def ready(self) -> bool:
        """Model warm and language gate built: reranking can be applied."""
        return self._languages_ready and self.scorer.ready

    @property
    def model_state(self) -> ModelState:
        """The model's state (:attr:`ScorerSlot.state`); ``warm`` once reranking can be
        applied (the language gate built too)."""
        slot = self.scorer
        state: ModelState = slot.state if isinstance(slot, ScorerSlot) else "warm"
        if state == "warm" and not self.ready:
            return "loading"
        return state

    @property
    def model_name(self) -> str:
        return self.scorer.info.name

    def status(self, outcome: Outcome, scored: ScoredWindow | None) -> dict[str, Any]:
        """The ``_rerank`` object of a response: what happened, and with which model."""
        status: dict[str, Any] = {"status": outcome.status}
        if outcome.reason:
            status["reason"] = str(outcome.reason)
        if scored is not None and scored.scores is not None:
            status["model"] = self.model_name
            status["reranked"] = len(scored.scores)
        return status

    def _skip(self, query: str, docs: Sequence[Doc]) -> Reason | None:
        if not docs:
            return Reason.NO_HITS
        if not self.ready:
            return Reason.MODEL_NOT_READY
        if not self.languages.allows(query):
            return Reason.UNSUPPORTED_LANGUAGE
        if not any(d.text for d in docs):
            return Reason.NO_DOCUMENT_TEXT
        return None

    async def score(
        self,
        query: str,
        instruction: str | None,
        docs: Sequence[Doc],
        deadline: Deadline,
        *,
        asker: Asker = NOBODY,
        page_from: int = 0,
    ) -> ScoredWindow:
        """Scores for the longest prefix of ``docs`` (in ES order) that ``deadline``
        allows, or why not. ``instruction`` None: the model's. ``asker`` is who waits its
        turn; ``page_from`` > 0 is a later page of the same search."""
        skip = self._skip(query, docs)
        if skip is not None:
            return ScoredWindow(None, Outcome.kept(skip))
        instruction = instruction or self.config.model.instruction
        keys = [
            self.scores.key_for(self.model_name, instruction, query, d.index, d.id, d.text)
            for d in docs
        ]
        # Not cut at the deadline: a score from Redis spares the model, and the call has its own
        # short timeout (tuning.shared.timeout_ms); a failing Redis is then left alone.
        cached = _Cached(keys, await self.scores.lookup(keys))
        floor = min(self.config.rerank.min_window, len(docs))
        have = cached.have
        if have == len(docs) or (page_from > 0 and have >= floor):
            # A later page keeps the prefix its first page was served with: its scores are
            # the ones cached, so every hit still appears exactly once across the pages.
            return cached.served(have)
        texts = [d.text for d in docs]
        score = partial(self._score_part, query, instruction, texts)
        decision = self.admission.admit(asker, Window(cached.missing, have, floor), deadline, score)
        if isinstance(decision, Refusal):
            if decision.reason is Reason.BUDGET and have >= floor:
                return cached.served(have)  # what is cached already is all that fits
            return ScoredWindow(None, Outcome.kept(decision.reason))
        async with decision as grant:
            answers = await grant.run()
        return self._served(cached, answers, floor)

    async def _score_part(
        self,
        query: str,
        instruction: str,
        texts: Sequence[str],
        indices: Sequence[int],
        deadline: Deadline,
    ) -> ScoreResult:
        return await self.scorer.score(
            query, [texts[i] for i in indices], instruction, deadline=deadline
        )

    def _served(self, cached: _Cached, answers: Answers, floor: int) -> ScoredWindow:
        """The window with the answers in: its scored prefix, or why ES's order stands."""
        scores = list(cached.scores)
        for i, score in answers.scores.items():
            scores[i] = score
        fresh = sorted(answers.scores)
        self.scores.put_many([cached.keys[i] for i in fresh], [answers.scores[i] for i in fresh])
        if answers.fault is not None:
            return ScoredWindow(None, Outcome.kept(answers.fault), answers.timings)
        have = _prefix(scores)
        if have < floor:
            return ScoredWindow(None, Outcome.kept(answers.short), answers.timings)
        outcome = APPLIED if have == len(scores) else Outcome("applied", window=have)
        return ScoredWindow(_floats(scores[:have]), outcome, answers.timings)

    async def score_all(
        self,
        asker: Asker,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        deadline: Deadline,
    ) -> ScoreResult:
        """Every document scored, for the rerank API: no cache, no budget cut, no breaker,
        in parts that take turns with everyone else's at the model's queue."""

        async def score(indices: Sequence[int], within: Deadline) -> ScoreResult:
            part = [documents[i] for i in indices]
            return await self.scorer.score(query, part, instruction, deadline=within)

        return await self.admission.score_all(asker, len(documents), deadline, score)


def _prefix(scores: Sequence[float | None]) -> int:
    """How many documents from the top have a score."""
    for i, score in enumerate(scores):
        if score is None:
            return i
    return len(scores)


def _floats(scores: Sequence[float | None]) -> list[float]:
    return [float(v) for v in scores if v is not None]
