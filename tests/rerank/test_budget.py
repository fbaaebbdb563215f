"""CostModel: what fits a budget, learned from passes and answers; FairGate: fair admission."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from sidecar.errors import Overloaded
from sidecar.handlers.outcomes import fair_key
from sidecar.rerank.budget import Backlog, CostModel
from sidecar.rerank.fair import FairGate


def test_unknown_cost_fits_everything_then_learns_from_passes() -> None:
    cost = CostModel(safety=1.0)
    idle = Backlog()
    assert cost.fit([True] * 50, remaining_s=1.0, backlog=idle) == 50
    assert cost.predict(10, idle) is None
    cost.observe_pass(pairs=20, seconds=1.0)  # 50 ms a pair
    assert cost.predict(10, idle) == pytest.approx(0.5)
    assert cost.fit([True] * 50, remaining_s=1.0, backlog=idle) == 20
    # Pairs with the model ahead eat the same budget.
    assert cost.fit([True] * 50, remaining_s=1.0, backlog=Backlog(with_model=10)) == 10
    # Cached scores cost nothing: only the missing ones count.
    assert cost.fit([False] * 30 + [True] * 20, remaining_s=0.5, backlog=idle) == 40


def test_passes_weigh_by_their_pairs() -> None:
    cost = CostModel(safety=1.0)
    cost.observe_pass(pairs=60, seconds=0.6)  # 10 ms a pair
    cost.observe_pass(pairs=1, seconds=0.05)  # a one-pair tail: mostly fixed cost
    assert cost.per_pair == pytest.approx((0.7 * 0.6 + 0.3 * 0.05) / (0.7 * 60 + 0.3 * 1))
    assert cost.per_pair is not None and cost.per_pair < 0.011


def test_the_wait_counts_the_lighter_users_ahead() -> None:
    """The lightest recent user is admitted first: another waiting client goes ahead of
    this one until its use has caught up with this client's (never more than it has
    waiting); this client's own waiting pairs go first."""
    backlog = Backlog(
        with_model=10, own_waiting=5, own_usage=20, others=((0, 100), (30, 50), (500, 40))
    )
    # 15 pairs of this client bring its use to 35: the idle client gets 35 in first, the
    # one at 30 gets 5, the heavy one none.
    assert backlog.before(10) == 10 + 15 + 35 + 5
    cost = CostModel(safety=1.0)
    cost.observe_pass(pairs=10, seconds=0.1)  # 10 ms a pair: 1 s is 100 pairs
    k = cost.fit([True] * 100, remaining_s=1.0, backlog=backlog)
    assert backlog.before(k) <= 100 < backlog.before(k + 1)


def test_remote_answers_are_per_pair_including_the_ones_ahead() -> None:
    cost = CostModel(safety=1.0)
    cost.observe(elapsed_s=2.0, own_pairs=10, ahead_pairs=30)
    assert cost.per_pair == pytest.approx(0.05)
    assert cost.answered == pytest.approx(0.05)


def test_a_remote_timeout_is_a_lower_bound_that_hang_detection_ignores() -> None:
    cost = CostModel(safety=1.0)
    cost.observe(elapsed_s=0.1, own_pairs=100, ahead_pairs=0)  # 1 ms a pair
    cost.observe_timeout(elapsed_s=1.5, own_pairs=100, ahead_pairs=0)
    assert cost.per_pair == pytest.approx(0.015)
    cost.observe_timeout(elapsed_s=0.1, own_pairs=100, ahead_pairs=0)
    assert cost.per_pair == pytest.approx(0.015), "a lower bound never lowers the estimate"
    # A hang is judged by what answers said: timeouts cannot make a hang look like load.
    assert cost.predict_answer(10, Backlog()) == pytest.approx(0.01)


async def test_gate_admits_at_once_under_capacity() -> None:
    gate = FairGate(max_pairs=100, max_waiting=4)
    async with gate.admit("a", 60):
        assert gate.in_flight == 60
    assert gate.in_flight == 0


async def test_gate_serves_the_lightest_user_first() -> None:
    gate = FairGate(max_pairs=10, max_waiting=100)
    order: list[str] = []
    release = asyncio.Event()

    async def one(client: str, pairs: int) -> None:
        async with gate.admit(client, pairs):
            order.append(client)
            await release.wait()

    holder = asyncio.create_task(one("holder", 10))
    await asyncio.sleep(0)
    # A noisy client queues ten requests before two quiet ones queue one each.
    noisy = [asyncio.create_task(one("noisy", 10)) for _ in range(10)]
    await asyncio.sleep(0)
    quiet = [asyncio.create_task(one(name, 10)) for name in ("quiet 1", "quiet 2")]
    await asyncio.sleep(0)
    assert order == ["holder"]
    release.set()
    await asyncio.gather(holder, *noisy, *quiet)
    # Once the noisy client has had one turn, both quiet ones are lighter users than it.
    assert order[1:4] == ["noisy", "quiet 1", "quiet 2"]
    assert gate.in_flight == 0 and gate.waiting_clients == 0


async def test_equal_users_take_turns_and_use_fades() -> None:
    now = [0.0]
    gate = FairGate(max_pairs=10, max_waiting=100, clock=lambda: now[0])
    order: list[str] = []
    release = asyncio.Event()

    async def one(client: str) -> None:
        async with gate.admit(client, 10):
            order.append(client)
            await release.wait()

    holder = asyncio.create_task(one("holder"))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(one(c)) for c in ("a", "a", "a", "b", "b", "b")]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(holder, *tasks)
    assert order[1:] == ["a", "b", "a", "b", "a", "b"]
    assert gate.usage("a") == 30
    now[0] = 10.0  # one half-life later
    assert gate.usage("a") == pytest.approx(15)


async def test_gate_sheds_only_the_client_with_too_many_waiting() -> None:
    gate = FairGate(max_pairs=10, max_waiting=2)
    release = asyncio.Event()

    async def one(client: str) -> None:
        async with gate.admit(client, 10):
            await release.wait()

    tasks = [asyncio.create_task(one("noisy")) for _ in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        async with gate.admit("noisy", 10):
            pass
    other = asyncio.create_task(one("quiet"))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks, other)
    assert gate.in_flight == 0 and gate.waiting_pairs == 0


async def test_a_waiter_that_gives_up_leaves_no_trace() -> None:
    gate = FairGate(max_pairs=10, max_waiting=4)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.admit("a", 10):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01), gate.admit("b", 5):
            pass
    assert gate.waiting_pairs == 0
    release.set()
    await holder
    assert gate.in_flight == 0
    async with gate.admit("b", 10):
        assert gate.in_flight == 10


async def test_an_oversized_request_is_admitted_alone() -> None:
    gate = FairGate(max_pairs=10, max_waiting=4)
    async with gate.admit("big", 1000):
        assert gate.in_flight == 1000


def test_an_ipv6_client_is_its_64() -> None:
    """A host with a /64 cannot take a fresh, unused place in the queue per address."""
    one = fair_key(ipaddress.ip_address("2001:db8:1:2::5"))
    assert one == fair_key(ipaddress.ip_address("2001:db8:1:2:ffff::9")) == "ip:2001:db8:1:2::/64"
    assert fair_key(ipaddress.ip_address("2001:db8:1:3::5")) != one
    assert fair_key(ipaddress.ip_address("192.0.2.7")) == "ip:192.0.2.7"
