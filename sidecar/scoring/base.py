"""The scoring interface every backend sits behind.

The rerank path and the direct API only ever see a :class:`Scorer`: an async object that
scores documents against a query. Local backends (Qwen3 causal-LM reranker, sequence
classification cross-encoders, the bundled bi-encoder) run inside a batching worker thread;
the remote backend talks HTTP to a shared rerank server.

Errors: ``score`` raises only :class:`~sidecar.errors.RerankUnavailable` subclasses
(``Overloaded``, ``RerankTimeout``, ``ModelFailure``) so that callers can fall back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sidecar.config import Backend
from sidecar.deadline import Deadline
from sidecar.errors import ModelFailure

#: Told of each piece of work the model finished: (pairs, padded tokens, seconds). A local
#: model's worker calls it after each forward pass (from its thread), a remote scorer after
#: each answer (0 tokens: the server does not say).
BatchObserver = Callable[[int, int, float], None]

#: What each backend is, in the words logs and /ready use.
KINDS: dict[Backend, str] = {
    "qwen3": "causal-lm reranker",
    "seqcls": "cross-encoder",
    "biencoder": "bi-encoder",
    "remote": "remote",
}


@dataclass(frozen=True)
class ResolvedModel:
    """Which backend serves a configured model, and where its files are."""

    #: As configured.
    name: str
    backend: Backend
    #: None for a hub model whose files are fetched at start(), and for a URL.
    directory: Path | None
    bundled: bool = False


@dataclass(frozen=True)
class ModelInfo:
    #: What was configured (HF id, path or URL).
    name: str
    backend: Backend
    #: Where it resolved to (local directory, bundled package path, URL).
    source: str
    device: str
    dtype: str
    max_length: int
    #: ISO 639-1 codes the model serves; empty = any.
    languages: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)
    #: What the operator should know about how the model is served (e.g. a remote server
    #: that cannot take the instruction); shown in /_sidecar/ready and logged at start.
    warnings: tuple[str, ...] = ()
    #: Why the model is not served (its start-up self-test failed); None while it is.
    refused: str | None = None

    @property
    def kind(self) -> str:
        """A bi-encoder says so plainly, in logs and /ready."""
        return KINDS[self.backend]


@dataclass(frozen=True)
class ScoreResult:
    scores: list[float]
    #: Tokens the model actually processed for this request (after truncation/chunking).
    tokens: int = 0
    #: Seconds the request waited in the queue and in the model.
    queue_s: float = 0.0
    model_s: float = 0.0


def checked(scores: Sequence[float], documents: int) -> list[float]:
    """``scores`` if they are one finite number per document; else the model failed.

    Every scorer passes its answer through here, so callers can use scores as they are.
    """
    if len(scores) != documents:
        raise ModelFailure(f"the model returned {len(scores)} scores for {documents} documents")
    if not all(math.isfinite(score) for score in scores):
        raise ModelFailure("the model returned a non-finite score")
    return list(scores)


class Scorer(Protocol):
    @property
    def info(self) -> ModelInfo:
        """What serves: name, backend, device, and why it is refused, if it is."""

    async def start(self) -> None:
        """Load, warm up (one real forward pass) and start the worker."""

    async def close(self) -> None:
        """Stop the worker; pending work fails with RerankUnavailable."""

    @property
    def ready(self) -> bool:
        """True once started and warmed."""

    @property
    def queued_pairs(self) -> int:
        """Pairs waiting for the model (0 for a remote server: its queue is not ours)."""

    def add_batch_observer(self, observer: BatchObserver) -> None:
        """Be told about every forward pass, or every remote answer."""

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
        """One finite score per document, in the order of ``documents``; higher is more
        relevant. Raises ModelFailure rather than answer anything else."""
