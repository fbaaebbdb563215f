"""How the worker cuts a batch into forward passes.

A pass costs what its padded tokens (rows × its longest item) cost on this model, in this
dtype, on this device, and that is not linear: a pass has a fixed cost, and kernels run a
token cheaper in a larger pass (a matmul of 64 rows keeps a CPU's vector units busier than
one of 4, and bf16 kernels need more rows than fp32 ones before they do). One big pass of
mixed lengths pays for a lot of padding; many small ones pay for the fixed cost and for
slow small kernels. Items are sorted by length and cut into contiguous groups that minimise
the total cost, within the token budget per pass.

The cost is a :class:`PassCost`: seconds as a function of padded tokens, learned at warm-up
by timing passes of 1, 2, 4, ... copies of one item (:func:`measure_costs`) and refined by
every real pass the worker runs (:meth:`PassCost.observe`). ``worker.pass_overhead_tokens``
pins it to the linear model ``overhead + tokens`` instead.
"""

from __future__ import annotations

import bisect
import math
import statistics
import time
from collections.abc import Callable, Sequence

from sidecar.scoring.local.backend import Item

#: Weight of one new observation in a learned cost point (an exponential moving average).
_LEARNING_RATE = 0.1
#: Learned points at most (sizes at least a factor of 2 apart).
_MAX_POINTS = 16
#: Width of the item passes are timed with at warm-up: about a catalogue record's, so that
#: the measured sizes reach the ones real batches have.
CALIBRATION_WIDTH = 64


class PassCost:
    """Seconds of one forward pass as a function of its padded tokens.

    Piecewise linear through measured points ``(tokens, seconds)`` and the fixed cost at 0
    tokens, extrapolated past the last point at the last segment's slope. Kept monotone
    (more tokens never cost less) and concave (a token never costs more in a larger pass),
    which is what the measurements show once noise is taken out, and what keeps the
    planner's shortcut exact.
    """

    def __init__(self, fixed: float, points: Sequence[tuple[int, float]]) -> None:
        if not points:
            raise ValueError("a pass cost needs at least one measured point")
        self.fixed = max(0.0, fixed)
        self._tokens = [int(tokens) for tokens, _ in sorted(points)]
        self._seconds = [float(seconds) for _, seconds in sorted(points)]
        self._tidy()

    @classmethod
    def linear(cls, overhead_tokens: float) -> PassCost:
        """``overhead + tokens`` in units of one token (the configured model)."""
        return cls(overhead_tokens, [(1, overhead_tokens + 1), (2, overhead_tokens + 2)])

    def _tidy(self) -> None:
        """Replace the points by their upper concave hull (with the fixed cost at 0), made
        non-decreasing: noise can neither make a size look cheaper than a smaller one nor
        make a mid-size pass look cheaper per token than both its neighbours."""
        points = [(0, self.fixed), *zip(self._tokens, self._seconds, strict=True)]
        hull: list[tuple[int, float]] = []
        for point in points:
            while len(hull) >= 2:
                (t0, s0), (t1, s1) = hull[-2], hull[-1]
                # Drop the middle point when it lies on or below the chord to the new one.
                if (s1 - s0) * (point[0] - t0) <= (point[1] - s0) * (t1 - t0):
                    hull.pop()
                else:
                    break
            hull.append(point)
        seconds = []
        for tokens in self._tokens:
            seconds.append(_on_line(hull, tokens))
        for i in range(len(seconds)):
            seconds[i] = max(seconds[i], seconds[i - 1] if i else self.fixed)
        self._seconds = seconds
        self.fixed = min(self.fixed, seconds[0])
        # The planner calls this thousands of times per batch: segments ready to evaluate.
        self._xs = [0, *self._tokens]
        self._ys = [self.fixed, *self._seconds]
        self._slopes = [
            (self._ys[i + 1] - self._ys[i]) / (self._xs[i + 1] - self._xs[i])
            for i in range(len(self._xs) - 1)
        ]

    def __call__(self, tokens: int) -> float:
        if tokens <= 0:
            return self.fixed
        # The segment that starts at or before ``tokens``; past the last point, the last one.
        i = min(bisect.bisect_right(self._xs, tokens) - 1, len(self._slopes) - 1)
        return self._ys[i] + self._slopes[i] * (tokens - self._xs[i])

    def observe(self, tokens: int, seconds: float) -> None:
        """Learn from a pass that took ``seconds`` for ``tokens`` padded tokens: the nearest
        point (in log scale) moves towards what was seen, scaled to its own size; a size
        far from every point (real passes larger than warm-up's) becomes a point itself."""
        if tokens <= 0 or not math.isfinite(seconds) or seconds <= 0:
            return
        logs = [abs(math.log(t / tokens)) for t in self._tokens]
        i = logs.index(min(logs))
        if logs[i] > math.log(2):
            if len(self._tokens) < _MAX_POINTS:
                at = bisect.bisect_left(self._tokens, tokens)
                self._tokens.insert(at, tokens)
                self._seconds.insert(at, seconds)
                self._tidy()
            return
        expected = self(tokens)
        if expected <= 0:
            return
        self._seconds[i] *= 1 + _LEARNING_RATE * (seconds / expected - 1)
        self._tidy()

    def overhead_tokens(self) -> float:
        """The fixed cost in units of the largest pass's cost per token (for the logs)."""
        per_token = self._seconds[-1] / self._tokens[-1]
        return self.fixed / per_token if per_token > 0 else math.inf

    def describe(self) -> str:
        """e.g. ``12 tok 3.1 ms, 768 tok 20.5 ms``: the learned points, for /ready and logs."""
        return ", ".join(
            f"{tokens} tok {seconds * 1000:.2g} ms"
            for tokens, seconds in zip(self._tokens, self._seconds, strict=True)
        )


def _on_line(points: Sequence[tuple[int, float]], tokens: int) -> float:
    """The piecewise-linear function through ``points`` (sorted, the first at 0 tokens) at
    ``tokens``; past the last point it goes on at the last segment's slope."""
    i = bisect.bisect_left([t for t, _ in points], tokens)
    if i < len(points) and points[i][0] == tokens:
        return points[i][1]
    if i >= len(points):
        i = len(points) - 1
    (low_t, low_s), (high_t, high_s) = points[max(i - 1, 0)], points[i]
    if high_t == low_t:
        return high_s
    return low_s + (high_s - low_s) * (tokens - low_t) / (high_t - low_t)


def plan_passes(
    lengths: Sequence[int],
    *,
    budget: int,
    overhead: float = 0.0,
    cost: Callable[[int], float] | None = None,
) -> list[range]:
    """Positions of each pass, for ``lengths`` sorted longest first.

    ``cost(padded_tokens)`` is the seconds of one pass; without it, a pass costs
    ``overhead + padded_tokens``. A pass holds at most ``budget`` padded tokens unless it is
    a single item.
    """
    count = len(lengths)
    if count == 0:
        return []
    if cost is None:
        # Finite, so the search still works; this large it only ever trades passes for budget.
        fixed = min(overhead, float(budget * count))

        def cost(tokens: int) -> float:
            return fixed + tokens

    if count * lengths[0] <= budget:
        # The cost is concave, so on [0, N] it lies above its chord: a pass of T ≤ N tokens
        # costs at least cost(0) + T·slope, slope = (cost(N) - cost(0)) / N. Any cut into k ≥ 2
        # passes then costs at least k·cost(0) + useful·slope, and one pass costs cost(0) +
        # (useful + padding)·slope: when the padding is worth less than one fixed cost, one
        # pass is the cheapest plan and the search below is not needed.
        whole = count * lengths[0]
        padding = sum(lengths[0] - length for length in lengths)
        slope = (cost(whole) - cost(0)) / whole
        if padding * slope <= cost(0):
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
            total = best[first] + cost(rows * lengths[first])
            if total < best[end]:
                best[end], start[end] = total, first
    cuts: list[range] = []
    end = count
    while end > 0:
        cuts.append(range(start[end], end))
        end = start[end]
    return cuts[::-1]


def calibration_item(item: Item, width: int = CALIBRATION_WIDTH) -> Item:
    """``item`` with its tokens repeated to ``width`` (the content does not change a pass's
    time; its size does)."""
    if len(item.ids) >= width or not item.ids:
        return item
    repeats = -(-width // len(item.ids))
    ids = (item.ids * repeats)[:width]
    types = None if item.type_ids is None else (item.type_ids * repeats)[:width]
    return Item(ids, types, item.prefix)


def measure_costs(
    forward: Callable[[list[Item]], object],
    item: Item,
    *,
    max_rows: int,
    max_tokens: int,
    time_limit_s: float = 0.5,
    repeats: int = 3,
    observe: Callable[[int, int, float], None] | None = None,
) -> PassCost:
    """Time passes of 1, 2, 4, ... copies of ``item`` (up to ``max_rows`` rows and
    ``max_tokens`` padded tokens, and while one pass stays under ``time_limit_s``).

    Each size is timed ``repeats`` times (the median), or fewer once its passes have taken
    half of ``time_limit_s``: the largest sizes cost the most, and repeating them tripled
    the start-up's passes (3.5 s of the bundled model's start on a 2-core CPU, 1.7 s now).
    A large pass's time is barely moved by a scheduler's hiccup; a hiccup can only make a
    size look slower, and real passes correct each point (:meth:`PassCost.observe`). The
    model meter sees fewer large passes, so the capacity it reports right after start-up
    leans towards the smaller passes' higher cost per pair until searches correct it.

    The fixed cost is where the line through the 1- and 2-row passes meets 0 tokens. On a
    device with spare parallelism (a GPU) larger passes are barely slower, the fixed cost
    dominates, and batches stay whole. ``observe`` is told of every timed pass (rows, padded
    tokens, seconds), as of any other: what the model costs is known before the first search.
    """

    def timed(items: list[Item]) -> float:
        runs: list[float] = []
        while not runs or (len(runs) < repeats and sum(runs) < time_limit_s / 2):
            started = time.perf_counter()
            forward(items)
            runs.append(time.perf_counter() - started)
            if observe is not None:
                observe(len(items), len(items) * max(1, len(item.ids)), runs[-1])
        return statistics.median(runs)

    forward([item])  # the first call pays one-off set-up costs
    width = max(1, len(item.ids))
    points: list[tuple[int, float]] = []
    rows = 1
    while rows <= max(1, max_rows) and (rows == 1 or rows * width <= max_tokens):
        seconds = timed([item] * rows)
        points.append((rows * width, seconds))
        if seconds > time_limit_s:
            break
        rows *= 2
    if len(points) == 1:
        return PassCost(0.0, points)
    (t1, s1), (t2, s2) = points[0], points[1]
    fixed = s1 - (s2 - s1) * t1 / (t2 - t1)
    return PassCost(fixed, points)
