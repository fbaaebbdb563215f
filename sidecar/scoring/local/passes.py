"""How the worker cuts a batch into forward passes.

A forward pass costs roughly ``overhead + width * rows`` (width = its longest item), so one
big pass of mixed lengths pays for a lot of padding. Items are sorted by length and cut
into contiguous groups that minimise the total cost, within the token budget per pass. On
a CPU, where cost is close to linear in padded tokens, that recovers most of the padding;
on a GPU the measured overhead is large and batches stay whole.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

from sidecar.scoring.local.backend import Item


def plan_passes(lengths: Sequence[int], *, budget: int, overhead: float) -> list[range]:
    """Positions of each pass, for ``lengths`` sorted longest first.

    A pass holds at most ``budget`` padded tokens unless it is a single item.
    """
    count = len(lengths)
    if count == 0:
        return []
    # Finite, so the search still works; this large it only ever trades passes for budget.
    overhead = min(overhead, float(budget * count))
    padding = sum(lengths[0] - length for length in lengths)
    if overhead >= padding and count * lengths[0] <= budget:
        # Even a perfect split could not save more padding than one extra pass costs.
        return [range(count)]
    # best[j]: cheapest cost of the first j items; start[j]: where the last pass begins.
    best = [0.0] + [math.inf] * count
    start = [0] * (count + 1)
    for end in range(1, count + 1):
        for first in range(end - 1, -1, -1):
            rows = end - first
            # Moving ``first`` left only widens the pass, so the budget check can stop here.
            if rows > 1 and rows * lengths[first] > budget:
                break
            cost = best[first] + rows * lengths[first] + overhead
            if cost < best[end]:
                best[end], start[end] = cost, first
    cuts: list[range] = []
    end = count
    while end > 0:
        cuts.append(range(start[end], end))
        end = start[end]
    return cuts[::-1]


def measure_overhead(
    forward: Callable[[list[Item]], object], item: Item, *, copies: int = 4, repeats: int = 2
) -> float:
    """The fixed cost of a pass in padded-token units, from timing 1 and ``copies`` items.

    ``math.inf`` when the larger pass is not measurably slower (a device with spare
    parallelism): then splitting a batch to save padding never pays.
    """

    def timed(items: list[Item]) -> float:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            forward(items)
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    forward([item])  # the first call pays one-off set-up costs
    single = timed([item])
    many = timed([item] * copies)
    per_token = (many - single) / ((copies - 1) * len(item.ids))
    if per_token <= 0:
        return math.inf
    return max(0.0, single / per_token - len(item.ids))
