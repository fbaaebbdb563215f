"""Demand: the model's throughput shared between clients while they ask for more."""

from __future__ import annotations

import math

import pytest

from sidecar.rerank.budget import Backlog, CostModel
from sidecar.rerank.demand import HALF_LIFE_S, UTILIZATION, Demand, water_level


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def steady(demand: Demand, clock: Clock, client: str, every_s: float, pairs: int, n: int) -> None:
    for _ in range(n):
        clock.now += every_s
        demand.arrive(client, pairs)


def test_water_level_is_max_min_fair() -> None:
    assert water_level([], 10.0) == math.inf
    assert water_level([1.0, 2.0], 10.0) == math.inf  # everyone gets what they ask
    # 1 and 2 are served in full; the two big ones share the 17 left.
    assert water_level([30.0, 1.0, 2.0, 40.0], 20.0) == pytest.approx(8.5)
    assert water_level([5.0, 5.0], 6.0) == pytest.approx(3.0)


def test_no_cap_while_the_model_answers_all_that_is_asked() -> None:
    clock = Clock()
    demand = Demand(clock=clock)
    # One search of 50 pairs every 2 s (25 pairs/s) at 20 ms a pair (50 pairs/s).
    steady(demand, clock, "a", 2.0, 50, 40)
    assert demand.cap("a", 0.02) is None
    assert demand.cap("a", None) is None, "an unknown cost caps nothing"


def test_under_overload_a_search_gets_the_throughput_over_the_search_rate() -> None:
    clock = Clock()
    demand = Demand(clock=clock)
    # Two searches a second of 50 pairs each (100 pairs/s) at 30 ms a pair (33 pairs/s).
    steady(demand, clock, "a", 0.5, 50, 60)
    cap = demand.cap("a", 0.03)
    want = UTILIZATION / 0.03 / 2.0
    assert cap is not None
    assert want * 0.9 <= cap <= want * 1.1


def test_a_heavy_client_does_not_shrink_a_light_ones_share() -> None:
    clock = Clock()
    demand = Demand(clock=clock)
    for _ in range(100):
        clock.now += 0.1
        demand.arrive("heavy", 50)  # 500 pairs/s
        if int(clock.now * 10) % 10 == 0:
            demand.arrive("light", 20)  # 20 pairs/s
    # 10 ms a pair: 85 pairs/s to share. The light client asks less than half: no cap.
    assert demand.cap("light", 0.01) is None
    heavy = demand.cap("heavy", 0.01)
    assert heavy is not None and heavy < 20


def test_quiet_clients_drop_out_and_the_table_is_bounded() -> None:
    clock = Clock()
    demand = Demand(max_clients=3, clock=clock)
    for n in range(10):
        demand.arrive(f"c{n}", 10)
    assert len(demand._clients) == 3
    clock.now += HALF_LIFE_S * 10
    demand.cap("c9", 0.01)
    assert not demand._clients


def test_fit_stops_at_the_cap_counting_missing_pairs_only() -> None:
    cost = CostModel(safety=1.0)
    idle = Backlog()
    assert cost.fit([True] * 50, 10.0, idle, max_pairs=15) == 15
    # Cached scores are free: the cap counts the pairs the model is asked for.
    assert cost.fit([False] * 5 + [True] * 45, 10.0, idle, max_pairs=15) == 20
    cost.observe_pass(pairs=20, seconds=1.0)  # 50 ms a pair: 1 s affords 20
    assert cost.fit([True] * 50, 1.0, idle, max_pairs=30) == 20
