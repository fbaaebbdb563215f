"""Shadow mode: rerank off the response path and record how much the order would change.

The client gets the ES order at ES latency; the rerank runs afterwards in a bounded set of
background tasks (beyond the bound, shadow work is dropped rather than queued).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.rerank.engine import RerankEngine
from sidecar.rerank.plan import SearchPlan

log = logging.getLogger("sidecar.shadow")


@dataclass
class ShadowStats:
    compared: int = 0
    dropped: int = 0
    failed: int = 0
    top1_changed: int = 0
    total_displacement: float = 0.0


def displacement(scores: Sequence[float]) -> list[int]:
    """For each hit in ES order, how many places the rerank would move it."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [abs(new - old) for new, old in enumerate(order)]


class ShadowRunner:
    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        self.tasks: set[asyncio.Task[None]] = set()
        self.stats = ShadowStats()
        #: Told the per-hit displacement of each comparison (metrics).
        self.observers: list[Callable[[Sequence[int]], None]] = []

    def submit(
        self, engine: RerankEngine, plan: SearchPlan, hits: Sequence[dict[str, Any]], rid: str
    ) -> bool:
        if len(self.tasks) >= self.max_tasks:
            self.stats.dropped += 1
            return False
        # Shallow copies: the response path filters _source on the originals afterwards.
        snapshot = [dict(h) for h in hits]
        task = asyncio.create_task(self._run(engine, plan, snapshot, rid))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _run(
        self, engine: RerankEngine, plan: SearchPlan, hits: list[dict[str, Any]], rid: str
    ) -> None:
        scored = await engine.score_hits(plan, hits)
        if scored.scores is None:
            self.stats.failed += 1
            log.info("shadow rerank not done: %s", scored.outcome.header)
            return
        moves = displacement(scored.scores)
        self.stats.compared += 1
        self.stats.total_displacement += sum(moves) / max(1, len(moves))
        top_changed = moves[0] != 0 if moves else False
        self.stats.top1_changed += int(top_changed)
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
