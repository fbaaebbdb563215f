"""The scorer the service holds while the configured one loads, fails or retries.

Everything that scores (the rerank engine, the rerank API) holds the slot from start-up
on. Until a scorer is put in it, it is not ready (searches keep the ES order with
``skipped; reason=model_not_ready``) and it says why: the last load error and how many
attempts failed, for ``/_sidecar/ready`` and the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sidecar.config import ModelConfig
from sidecar.deadline import Deadline
from sidecar.errors import RerankUnavailable
from sidecar.reasons import Reason
from sidecar.scoring.base import BatchObserver, ModelInfo, Scorer, ScoreResult

ModelState = Literal["loading", "retrying", "refused", "warm", "stopped"]
MODEL_STATES: tuple[ModelState, ...] = ("loading", "retrying", "refused", "warm", "stopped")


class ModelNotReady(RerankUnavailable):
    reason = Reason.MODEL_NOT_READY


class ScorerSlot:
    def __init__(self, config: ModelConfig) -> None:
        self._config = config
        self._scorer: Scorer | None = None
        self._observers: list[BatchObserver] = []
        #: Why the last load attempt failed; None once loaded (or before the first try).
        self.load_error: str | None = None
        self.load_failures = 0

    def attach(self, scorer: Scorer) -> None:
        """Let the slot's observers watch ``scorer`` before it starts: its warm-up passes
        teach what the model costs before the first search."""
        for observer in self._observers:
            scorer.add_batch_observer(observer)

    def put(self, scorer: Scorer) -> None:
        """A scorer that started and warmed up (:meth:`attach` first); the slot serves it
        from now on."""
        self._scorer = scorer
        self.load_error = None

    def holds(self, scorer: Scorer) -> bool:
        """Whether ``scorer`` is the one served (the slot closes it)."""
        return self._scorer is scorer

    def failed(self, reason: str) -> None:
        self.load_error = reason
        self.load_failures += 1

    @property
    def scorer(self) -> Scorer | None:
        return self._scorer

    @property
    def info(self) -> ModelInfo:
        if self._scorer is not None:
            return self._scorer.info
        return ModelInfo(
            self._config.name,
            "remote" if self._config.name.startswith(("http://", "https://")) else "seqcls",
            source="not loaded",
            device="none",
            dtype="none",
            max_length=self._config.max_length,
            refused=self.load_error,
        )

    async def start(self) -> None:
        # The service starts the scorer it puts in the slot; the slot itself has none.
        return None

    async def close(self) -> None:
        if self._scorer is not None:
            await self._scorer.close()

    @property
    def ready(self) -> bool:
        return self._scorer is not None and self._scorer.ready

    @property
    def state(self) -> ModelState:
        """``loading`` (the first load), ``retrying`` (a load failed; retried with a
        doubling wait), ``refused`` (loaded, and refused by its self-test), ``warm``, or
        ``stopped`` (its worker is gone). Searches are served in ES order in all but
        ``warm``."""
        if self._scorer is None:
            return "retrying" if self.load_failures else "loading"
        if self._scorer.info.refused:
            return "refused"
        return "warm" if self._scorer.ready else "stopped"

    @property
    def queued_pairs(self) -> int:
        return self._scorer.queued_pairs if self._scorer is not None else 0

    def add_batch_observer(self, observer: BatchObserver) -> None:
        """Watch every scorer this slot is given (:meth:`attach`)."""
        self._observers.append(observer)
        if self._scorer is not None:
            self._scorer.add_batch_observer(observer)

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        *,
        deadline: Deadline | None = None,
    ) -> ScoreResult:
        if self._scorer is None:
            raise ModelNotReady("the model is not loaded")
        return await self._scorer.score(query, documents, instruction, deadline=deadline)
