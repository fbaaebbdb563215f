"""ThroughputShare: the model's throughput shared between clients while they ask for more
than it answers (the ledger's figures, max-min fair)."""

from __future__ import annotations

import math

import pytest

from sidecar.admission.ledger import ClientLedger
from sidecar.admission.share import UTILIZATION, ThroughputShare, water_level


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def share_of() -> tuple[ThroughputShare, Clock]:
    clock = Clock()
    return ThroughputShare(ClientLedger(clock=clock)), clock


def steady(share: ThroughputShare, clock: Clock, client: str, every_s: float, pairs: int) -> None:
    for _ in range(60):
        clock.now += every_s
        share.arrive(client, pairs)


def test_water_level_is_max_min_fair() -> None:
    assert water_level([], 10.0) == math.inf
    assert water_level([1.0, 2.0], 10.0) == math.inf  # everyone gets what they ask
    # 1 and 2 are served in full; the two big ones share the 17 left.
    assert water_level([30.0, 1.0, 2.0, 40.0], 20.0) == pytest.approx(8.5)
    assert water_level([5.0, 5.0], 6.0) == pytest.approx(3.0)


def test_no_cap_while_the_model_answers_all_that_is_asked() -> None:
    share, clock = share_of()
    # One search of 50 pairs every 2 s (25 pairs/s) at 20 ms a pair (50 pairs/s).
    steady(share, clock, "a", 2.0, 50)
    assert share.cap("a", 0.02) is None
    assert share.cap("a", None) is None, "an unknown cost caps nothing"


def test_under_overload_a_search_gets_the_throughput_over_the_search_rate() -> None:
    share, clock = share_of()
    # Two searches a second of 50 pairs each (100 pairs/s) at 30 ms a pair (33 pairs/s).
    steady(share, clock, "a", 0.5, 50)
    cap = share.cap("a", 0.03)
    want = UTILIZATION / 0.03 / 2.0
    assert cap is not None
    assert want * 0.9 <= cap <= want * 1.1


def test_a_heavy_client_does_not_shrink_a_light_ones_share() -> None:
    share, clock = share_of()
    for step in range(100):
        clock.now += 0.1
        share.arrive("heavy", 50)  # 500 pairs/s
        if step % 10 == 0:
            share.arrive("light", 20)  # 20 pairs/s
    # 10 ms a pair: 85 pairs/s to share. The light client asks less than half: no cap.
    assert share.cap("light", 0.01) is None
    heavy = share.cap("heavy", 0.01)
    assert heavy is not None and heavy < 20
