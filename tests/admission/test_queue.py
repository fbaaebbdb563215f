"""FairQueue: the lightest recent user goes first, and the queue predicts its own wait by
the rule it admits with. Driven through enqueue and leave, without waiting on time."""

from __future__ import annotations

import asyncio
import random

import pytest

from sidecar.admission.ledger import HALF_LIFE_S, ClientLedger
from sidecar.admission.queue import FairQueue, Waiter
from sidecar.errors import Overloaded


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def queue_of(max_pairs: int, *, max_waiting: int = 100) -> tuple[FairQueue, Clock]:
    clock = Clock()
    return FairQueue(ClientLedger(clock=clock), max_pairs, max_waiting=max_waiting), clock


def is_admitted(waiter: Waiter) -> bool:
    return waiter.admitted.done() and not waiter.admitted.cancelled()


def admission_order(queue: FairQueue, holder: Waiter, waiters: list[Waiter]) -> list[Waiter]:
    """Answer the parts one after the other, each as soon as it is admitted: the parts in
    the order the queue admitted them."""
    order: list[Waiter] = []
    running = holder
    for _ in waiters:
        queue.leave(running)
        (running,) = [w for w in waiters if is_admitted(w) and w not in order]
        order.append(running)
    queue.leave(running)
    return order


def run_one_at_a_time(queue: FairQueue, holder: Waiter, waiters: list[Waiter]) -> list[str]:
    """The clients in the order the queue admitted their parts."""
    return [w.client for w in admission_order(queue, holder, waiters)]


async def test_admits_at_once_under_capacity() -> None:
    queue, _ = queue_of(100)
    async with queue.admit("a", "a", 60) as waiter:
        assert queue.in_flight == 60 and waiter.ahead == 0
    assert queue.in_flight == 0


async def test_the_lightest_user_goes_first() -> None:
    queue, _ = queue_of(10)
    holder = queue.enqueue("holder", "holder", 10)
    # A noisy client queues ten requests before two quiet ones queue one each.
    waiters = [queue.enqueue("noisy", "noisy", 10) for _ in range(10)]
    waiters += [queue.enqueue(name, name, 10) for name in ("quiet 1", "quiet 2")]
    order = run_one_at_a_time(queue, holder, waiters)
    # Once the noisy client has had one turn, both quiet ones are lighter users than it.
    assert order[:3] == ["noisy", "quiet 1", "quiet 2"]
    assert queue.in_flight == 0 and queue.waiting_pairs == 0


async def test_equal_users_take_turns_and_use_fades() -> None:
    queue, clock = queue_of(10)
    holder = queue.enqueue("holder", "holder", 10)
    waiters = [queue.enqueue(c, c, 10) for c in ("a", "a", "a", "b", "b", "b")]
    assert run_one_at_a_time(queue, holder, waiters) == ["a", "b", "a", "b", "a", "b"]
    assert queue.ledger.used("a") == 30
    clock.now += HALF_LIFE_S
    assert queue.ledger.used("a") == pytest.approx(15)


async def test_only_the_client_with_too_many_waiting_is_refused() -> None:
    queue, _ = queue_of(10, max_waiting=2)
    first = queue.enqueue("noisy", "noisy", 10)
    queue.enqueue("noisy", "noisy", 10)
    queue.enqueue("noisy", "noisy", 10)
    with pytest.raises(Overloaded):
        queue.enqueue("noisy", "noisy", 10)
    quiet = queue.enqueue("quiet", "quiet", 10)
    queue.leave(first)
    assert is_admitted(quiet), "the quiet client is the lighter user: it goes next"


async def test_a_waiter_that_gives_up_leaves_no_trace() -> None:
    queue, _ = queue_of(10)
    holder = queue.enqueue("a", "a", 10)
    quitter = queue.enqueue("b", "b", 5)
    queue.leave(quitter)
    assert queue.waiting_pairs == 0 and quitter.admitted.cancelled()
    queue.leave(holder)
    assert queue.in_flight == 0
    async with queue.admit("b", "b", 10):
        assert queue.in_flight == 10


async def test_a_waiter_cancelled_while_waiting_gives_its_place_back() -> None:
    queue, _ = queue_of(10)
    holder = queue.enqueue("a", "a", 10)
    entered = False

    async def wait() -> None:
        nonlocal entered
        async with queue.admit("b", "b", 10):
            entered = True

    task = asyncio.create_task(wait())
    await asyncio.sleep(0)  # one turn of the loop: the task takes its place and waits
    assert queue.waiting("b") == 10
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not entered and queue.waiting_pairs == 0
    queue.leave(holder)
    assert queue.in_flight == 0


async def test_within_a_client_the_request_that_had_least_goes_first() -> None:
    """Many users behind one address: one user's _msearch (one request, many parts) does
    not hold back the next user's search from the same address."""
    queue, _ = queue_of(10)
    holder = queue.enqueue("other", "other", 10)
    msearch = [queue.enqueue("frontend", "msearch", 10) for _ in range(8)]
    search = queue.enqueue("frontend", "search", 10)
    order = admission_order(queue, holder, [*msearch, search])
    # The msearch's oldest part first (neither request had any pairs in), then the search:
    # it has had fewer pairs in than the msearch, whose other parts wait for it.
    assert order[:2] == [msearch[0], search]


async def test_one_request_cannot_take_all_of_its_clients_places() -> None:
    queue = FairQueue(ClientLedger(clock=Clock()), 10, max_waiting=8, max_waiting_per_request=4)
    queue.enqueue("frontend", "holder", 10)
    for _ in range(4):
        queue.enqueue("frontend", "msearch", 10)
    with pytest.raises(Overloaded):
        queue.enqueue("frontend", "msearch", 10)
    # Another user's search from the same address still gets its place.
    queue.enqueue("frontend", "search", 10)
    assert queue.waiting("frontend") == 50


async def test_an_oversized_request_is_admitted_alone() -> None:
    queue, _ = queue_of(10)
    async with queue.admit("big", "big", 1000):
        assert queue.in_flight == 1000


@pytest.mark.parametrize("seed", range(30))
async def test_the_predicted_wait_is_what_the_queue_does(seed: int) -> None:
    """Random queues: the pairs that go to the model before a new request's last part is
    admitted (answered ones, and those with the model then, its own included), counted by
    running the queue, equal what ``ahead_of`` predicted before it was queued."""
    rng = random.Random(seed)
    queue, _ = queue_of(rng.choice([10, 20, 40]))
    for name in "abcd":
        queue.ledger.touch(name).used = rng.choice([0.0, 5.0, 15.0, 40.0, 90.0])
    holder = queue.enqueue("holder", "holder", queue.max_pairs)
    others = []
    for _ in range(12):
        client = rng.choice("abcd")
        # Several requests per client: searches, and an _msearch with many parts.
        others.append(queue.enqueue(client, f"{client}{rng.randint(0, 2)}", rng.choice([5, 10])))
    me, pairs, part = rng.choice("abcde"), rng.randint(1, 35), 10
    request = rng.choice([f"{me}-new", f"{me}0"])  # a new request, or more of one waiting
    predicted = queue.ahead_of(me, request, pairs, part)
    mine = [queue.enqueue(me, request, min(part, pairs - j)) for j in range(0, pairs, part)]
    everyone = [holder, *others, *mine]
    running, left, answered = [holder], set(), 0
    while not is_admitted(mine[-1]):
        head = running.pop(0)  # the model answers in the order it admitted
        answered += head.pairs
        left.add(id(head))
        queue.leave(head)
        running += [
            w for w in everyone if is_admitted(w) and id(w) not in left and w not in running
        ]
    # Answered before it was admitted, with the model then, and its own.
    assert answered + mine[-1].ahead + mine[-1].pairs == predicted


async def test_the_part_under_way_counts_only_what_is_left_of_it() -> None:
    """A search that arrives while another client's part is with the model waits for
    what is left of that part (the model's word on what it answered since the part was
    admitted), never less than the parts behind it, and never more than the part."""
    clock = Clock()
    answered = {"since": 0.0}

    def answered_since(since: float) -> float:
        assert since == 100.0, "the oldest part's admission time"
        return answered["since"]

    queue = FairQueue(ClientLedger(clock=clock), 10, answered_since=answered_since)
    heavy = queue.enqueue("heavy", "api", 6)
    behind = queue.enqueue("heavy", "api 2", 4)
    assert queue.in_flight == 10
    assert queue.ahead_of("light", "search", 10, 10) == 20
    answered["since"] = 2.5
    assert queue.ahead_of("light", "search", 10, 10) == 17.5
    assert queue.ahead_of("light", "search", 10, 10, progress=False) == 20, "all of it"
    answered["since"] = 60.0  # a slow pass: the oldest part is all it can have answered
    assert queue.ahead_of("light", "search", 10, 10) == 14
    queue.leave(heavy)
    queue.leave(behind)
    assert queue.ahead_of("light", "search", 10, 10) == 10
