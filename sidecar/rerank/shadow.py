"""Shadow mode: rerank off the response path and record how much the order would change.

The client gets the ES order at ES latency; the rerank runs afterwards in a bounded set of
background tasks (beyond the bound, shadow work is dropped rather than queued).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from sidecar.rerank.engine import ScoredWindow

log = logging.getLogger("sidecar.shadow")


def displacement(scores: Sequence[float]) -> list[int]:
    """For each hit in ES order, how many places the rerank would move it."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [abs(new - old) for new, old in enumerate(order)]


class ShadowRunner:
    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        self.tasks: set[asyncio.Task[None]] = set()
        #: Comparisons finished (a test's signal that background work has run).
        self.compared = 0
        #: Told the per-hit displacement of each comparison (metrics).
        self.observers: list[Callable[[Sequence[int]], None]] = []

    def submit(self, score: Callable[[], Awaitable[ScoredWindow]], rid: str) -> bool:
        """Run ``score`` in the background, or drop it when ``max_tasks`` are running."""
        if len(self.tasks) >= self.max_tasks:
            return False
        task = asyncio.create_task(self._run(score, rid))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _run(self, score: Callable[[], Awaitable[ScoredWindow]], rid: str) -> None:
        scored = await score()
        if scored.scores is None:
            log.info("shadow rerank not done: %s", scored.outcome.header)
            return
        moves = displacement(scored.scores)
        self.compared += 1
        top_changed = moves[0] != 0 if moves else False
        for observe in self.observers:
            observe(moves)
        log.info(
            "shadow rerank",
            extra={
                "request_id": rid,
                "hits": len(moves),
                "mean_displacement": round(sum(moves) / max(1, len(moves)), 3),
                "max_displacement": max(moves, default=0),
                "top1_changed": top_changed,
            },
        )

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
