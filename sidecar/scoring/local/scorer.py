"""A :class:`~sidecar.scoring.base.Scorer` over a local model and its batching worker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from sidecar.config import ModelConfig, TuningConfig
from sidecar.deadline import Deadline
from sidecar.errors import ModelFailure, ModelLoadError, RerankTimeout, RerankUnavailable
from sidecar.procstat import LoopClock
from sidecar.scoring.base import BatchObserver, ModelInfo, ScoreResult, checked
from sidecar.scoring.local.backend import Encoded, LocalBackend
from sidecar.scoring.local.threads import adaptive
from sidecar.scoring.local.worker import BatchWorker

log = logging.getLogger("sidecar.models")

_WARMUP_QUERY = "warm-up query"
_WARMUP_DOCUMENTS = ("a warm-up document", "another, somewhat longer warm-up document")

#: (query, a document that answers it, one that has nothing to do with it): any working
#: reranker, bi-encoders included, ranks the first document above the second, by far.
SELF_TEST: tuple[tuple[str, str, str], ...] = (
    (
        "What is the capital of France?",
        "Paris is the capital and largest city of France.",
        "Bananas are a good source of potassium and grow in tropical climates.",
    ),
    (
        "how do I renew a library book",
        "You can renew borrowed library books online from your account page or at the desk.",
        "The Pacific Ocean is the largest and deepest of the Earth's oceans.",
    ),
    (
        "symptoms of influenza",
        "Common symptoms of influenza include fever, cough, sore throat and muscle aches.",
        "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    ),
)


def describe(info: ModelInfo) -> str:
    """The start-up log line; a bi-encoder says plainly that it is not a cross-encoder."""
    details = [info.dtype, f"max_length {info.max_length}"]
    details.append(f"languages {', '.join(info.languages) or 'any'}")
    details.extend(f"{key} {value}" for key, value in info.extra.items())
    line = (
        f"model {info.name} ready: {info.kind} from {info.source} on {info.device} "
        f"({', '.join(details)})"
    )
    if info.backend == "biencoder":
        line += (
            "; this is a bi-encoder (query and documents embedded separately, cosine "
            "similarity), NOT a cross-encoder: expect weaker reranking"
        )
    return line


class LocalScorer:
    def __init__(
        self, backend: LocalBackend, model: ModelConfig, tuning: TuningConfig | None = None
    ) -> None:
        self._backend = backend
        self._model = model
        self._tuning = tuning or TuningConfig()
        self._worker = BatchWorker(backend, self._tuning.worker)
        self._ready = False
        self.info: ModelInfo = backend.info

    @property
    def backend(self) -> LocalBackend:
        """What the worker runs: the loaded model (read it; score through the scorer)."""
        return self._backend

    @property
    def ready(self) -> bool:
        return self._ready and self._worker.alive

    @property
    def queued_pairs(self) -> int:
        return self._worker.queued_pairs

    def add_batch_observer(self, observer: BatchObserver) -> None:
        self._worker.observers.append(observer)

    async def start(self) -> None:
        started = time.monotonic()
        await asyncio.to_thread(self._backend.load)
        self.info = self._backend.info
        # A count set in the config is kept; torch's default follows the free cores.
        cpu = self.info.device == "cpu" and not self._tuning.model.cpu_threads
        # start() runs on the event loop: its thread's CPU clock is the loop's.
        threads = adaptive(LoopClock()) if cpu else None
        if not self._tuning.model.warmup:
            self._worker.start(threads=threads)
        else:
            try:
                sample = await asyncio.to_thread(
                    self._encode, _WARMUP_QUERY, _WARMUP_DOCUMENTS, self._model.instruction
                )
                self._worker.start(
                    calibrate=min(sample.items, key=lambda item: len(item.ids)), threads=threads
                )
                await self._score(_WARMUP_QUERY, _WARMUP_DOCUMENTS, None, None)
            except RerankUnavailable as exc:
                await self.close()
                raise ModelLoadError(
                    f"model {self.info.name!r} loaded but its warm-up forward pass failed"
                ) from exc
        extra = {
            **self.info.extra,
            "pass_overhead_tokens": f"{self._worker.pass_overhead_tokens:.0f}",
        }
        if self._worker.pass_costs:
            extra["pass_costs"] = self._worker.pass_costs
        self.info = replace(self.info, extra=extra)
        if self._model.self_test:
            refusal = await self._self_test()
            if refusal is not None:
                self.info = replace(self.info, refused=refusal)
                await self.close()
                log.error("%s", refusal)
                return
        self._ready = True
        log.info("%s, started in %.1fs", describe(self.info), time.monotonic() - started)

    async def _self_test(self) -> str | None:
        """None if the model ranks every relevant self-test document first; else why not.

        Known ways of serving a reranker wrongly (a missing prompt template, padding on the
        wrong side, a conversion that scores everything 0.5) give plausible scores that rank
        at random: this catches them before a search is answered.
        """
        try:
            results = await asyncio.gather(
                *(self._score(query, (good, bad), None, None) for query, good, bad in SELF_TEST)
            )
        except RerankUnavailable as exc:
            return f"model {self.info.name!r} failed its start-up self-test: {exc}"
        scores = [result.scores for result in results]
        flat = [score for pair in scores for score in pair]
        lost = [
            f"{query!r}: relevant {good:.4g} <= irrelevant {bad:.4g}"
            for (query, _, _), (good, bad) in zip(SELF_TEST, scores, strict=True)
            if not good > bad
        ]
        if max(flat) - min(flat) <= 1e-6:
            detail = f"every score is the same ({flat[0]:.6g})"
        elif lost:
            detail = "the relevant document did not win for " + "; ".join(lost)
        else:
            return None
        return (
            f"model {self.info.name!r} failed its start-up self-test and is not served: "
            f"{detail}. A broken model gives plausible scores in a random order; check the "
            "model files (model.self_test: false is only for test models with random weights)"
        )

    async def close(self) -> None:
        self._ready = False
        await asyncio.to_thread(self._worker.close)

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        *,
        # The worker needs the deadline itself (to drop work nobody waits for), which an
        # asyncio.timeout() around the call could not tell it.
        deadline: Deadline | None = None,
    ) -> ScoreResult:
        if not self._ready:
            raise RerankUnavailable("the model is not ready")
        return await self._score(query, documents, instruction, deadline)

    async def _score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        deadline: Deadline | None,
    ) -> ScoreResult:
        if not documents:
            return ScoreResult(scores=[])
        timeout_s = None if deadline is None else deadline.remaining()
        # Refuse before tokenizing: an overloaded worker should cost the caller nothing.
        self._worker.check_capacity(len(documents))
        try:
            async with asyncio.timeout(timeout_s):
                encoded = await asyncio.to_thread(
                    self._encode, query, documents, instruction or self._model.instruction
                )
                done = await self._worker.run(
                    encoded, deadline=None if deadline is None else deadline.end
                )
        except TimeoutError as exc:
            raise RerankTimeout(f"no scores within {timeout_s}s") from exc
        return ScoreResult(
            scores=checked(done.scores, len(documents)),
            tokens=encoded.tokens,
            queue_s=done.queue_s,
            model_s=done.model_s,
        )

    def _encode(self, query: str, documents: Sequence[str], instruction: str) -> Encoded:
        try:
            return self._backend.encode(query, documents, instruction)
        except RerankUnavailable:
            raise
        except Exception as exc:
            # The Rust tokenizer raises bare Exceptions (e.g. on impossible truncation).
            log.exception("tokenizing a request of %d documents failed", len(documents))
            raise ModelFailure("the request could not be tokenized") from exc
