"""RerankEngine.score and the admission controller behind it, with an in-process scorer
whose behaviour each test sets: what it answers, and how the breaker counts it. The model's
cost is taught the way the model teaches it (passes reported to the meter), and the
admission machinery runs on a clock the test turns. No model, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from sidecar import deadline as deadline_clock
from sidecar.admission.breaker import AsyncBreaker
from sidecar.admission.controller import PART_HITS, AdmissionController, Asker
from sidecar.admission.ledger import ClientLedger
from sidecar.admission.meter import ModelMeter
from sidecar.config import build_config
from sidecar.deadline import Deadline
from sidecar.errors import ModelFailure, Overloaded, RerankTimeout
from sidecar.rerank.engine import Doc, RerankEngine
from sidecar.scoring.base import ModelInfo, ScoreResult

DOCS = [Doc("i", "1", "alpha"), Doc("i", "2", "beta"), Doc("i", "3", "gamma")]
WINDOW = [Doc("i", str(n), f"document {n:03d}") for n in range(50)]
REMOTE = ModelInfo("http://rerank.test/", "remote", "test", "remote", "remote", 512)


class Clock:
    """The admission machinery's clock (ledger, meter, probes); deadlines run on real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedScorer:
    """A Scorer that answers what ``behave`` says: scores, or an exception to raise, or
    ``"hang"`` (waits until cancelled). ``answers`` > 0: only that many calls answer, the
    ones after hang. A local one reports each answered call as a pass of ``pass_s`` (and
    turns the clock by as much); a remote one, as its answer."""

    clock: Clock
    behave: object = "ok"
    answers: int = -1
    pass_s: float = 0.01
    #: While set to an unset event, calls wait for it before answering.
    hold: asyncio.Event | None = None
    ready: bool = True
    calls: list[list[str]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    info: ModelInfo = field(
        default_factory=lambda: ModelInfo("scripted", "seqcls", "test", "cpu", "fp32", 512)
    )
    queued_pairs: int = 0
    observers: list[Callable[[int, int, float], None]] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def add_batch_observer(self, observer: Callable[[int, int, float], None]) -> None:
        self.observers.append(observer)

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        *,
        deadline: Deadline | None = None,
    ) -> ScoreResult:
        self.calls.append(list(documents))
        call = len(self.calls)
        self.called.set()
        # One turn of the event loop, as a real scorer's await gives: concurrent calls
        # interleave (a yield, not a wait for time to pass).
        await asyncio.sleep(0)
        if self.hold is not None:
            await self.hold.wait()
        if self.behave == "hang" or 0 <= self.answers < call:
            await asyncio.Event().wait()
        if isinstance(self.behave, BaseException):
            raise self.behave
        self.clock.now += self.pass_s
        for observe in self.observers:
            observe(len(documents), 0, self.pass_s)
        return ScoreResult([float(len(d)) for d in documents], model_s=0.01, queue_s=0.002)


@dataclass
class Rig:
    engine: RerankEngine
    scorer: ScriptedScorer
    clock: Clock

    @property
    def admission(self) -> AdmissionController:
        return self.engine.admission

    @property
    def breaker(self) -> AsyncBreaker:
        return self.admission.breaker

    def teach(self, per_pair_s: float, passes: int = 200) -> None:
        """The model has worked a while at ``per_pair_s`` a pair (10-pair passes)."""
        for _ in range(passes):
            self.clock.now += per_pair_s * 10
            self.admission.meter.observe(10, 0, per_pair_s * 10)

    async def score(self, docs: Sequence[Doc], budget_s: float, **kw: Any) -> Any:
        return await self.engine.score(
            kw.pop("query", "q"),
            kw.pop("instruction", None),
            docs,
            Deadline(budget_s, arrived=deadline_clock.now()),
            **kw,
        )


@pytest.fixture
def still_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlines on a clock that stands still: a test of how many pairs a budget affords
    must not depend on how long this machine took to get from the arrival to admission."""
    monkeypatch.setattr(deadline_clock, "now", lambda: 1000.0)


def rig(
    *,
    breaker: AsyncBreaker | None = None,
    share_throughput: bool = True,
    **scorer: Any,
) -> Rig:
    clock = Clock()
    scripted = ScriptedScorer(clock, **scorer)
    config = build_config(
        {
            "es": {"url": "http://127.0.0.1:9"},
            "model": {"name": "http://127.0.0.1:9/rerank"},
            "rerank": {"breaker": {"fail_max": 2, "reset_timeout_s": 60}},
        }
    )
    meter = ModelMeter(clock)
    scripted.add_batch_observer(meter.observe)
    admission = AdmissionController(
        breaker=breaker or AsyncBreaker(2, 60, clock=clock),
        meter=meter,
        ledger=ClientLedger(clock=clock),
        remote=lambda: scripted.info.backend == "remote",
        share_throughput=share_throughput,
    )
    engine = RerankEngine(config, scripted, admission)  # type: ignore[arg-type]
    engine.start_language_gate()
    return Rig(engine, scripted, clock)


async def test_scores_in_order_then_from_the_cache() -> None:
    r = rig()
    first = await r.score(DOCS, 5)
    assert first.outcome.header == "applied"
    assert first.scores == [5.0, 4.0, 5.0]
    assert (first.timings.model_s, first.timings.queue_s) == (0.01, 0.002)
    again = await r.score(DOCS, 5)
    assert again.outcome.header == "cached" and again.scores == first.scores
    assert len(r.scorer.calls) == 1, "a full cache hit never reaches the model"
    # Only the missing document goes to the model; the others come from the cache.
    more = await r.score([*DOCS, Doc("i", "4", "delta!")], 5)
    assert more.scores == [5.0, 4.0, 5.0, 6.0]
    assert r.scorer.calls[-1] == ["delta!"]


async def test_the_instruction_is_part_of_the_cache_key() -> None:
    r = rig()
    await r.score(DOCS, 5)
    await r.score(DOCS, 5, instruction="Judge by topic")
    assert len(r.scorer.calls) == 2


@pytest.mark.parametrize(
    ("docs", "ready", "reason"),
    [
        ([], True, "no_hits"),
        (DOCS, False, "model_not_ready"),
        ([Doc("i", "1", ""), Doc("i", "2", "")], True, "no_document_text"),
    ],
)
async def test_skips_without_calling_the_model(docs: list[Doc], ready: bool, reason: str) -> None:
    r = rig(ready=ready)
    scored = await r.score(docs, 5)
    assert scored.scores is None
    assert scored.outcome.header == f"skipped; reason={reason}"
    assert r.scorer.calls == []


@pytest.mark.parametrize(
    ("behave", "reason", "counted"),
    [
        (ModelFailure("bad scores"), "error", True),
        (RuntimeError("backend bug"), "error", True),
        (Overloaded("queue full"), "overloaded", False),
    ],
)
async def test_fallbacks_and_what_the_breaker_counts(
    behave: object, reason: str, counted: bool
) -> None:
    r = rig(behave=behave)
    scored = await r.score(DOCS, 0.05)
    assert scored.scores is None
    assert scored.outcome.header == f"fallback; reason={reason}"
    assert r.breaker.fail_counter == (1 if counted else 0)


async def test_the_breaker_opens_and_then_skips_the_model() -> None:
    r = rig(behave=ModelFailure("bad scores"))
    for _ in range(2):
        await r.score(DOCS, 5)
    assert r.breaker.state == "open"
    scored = await r.score(DOCS, 5)
    assert scored.outcome.header == "fallback; reason=breaker_open"
    assert len(r.scorer.calls) == 2


async def test_a_client_that_goes_away_is_not_a_model_failure() -> None:
    r = rig(behave="hang")
    task = asyncio.create_task(r.score(DOCS, 60))
    await r.scorer.called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert r.breaker.fail_counter == 0 and r.breaker.state == "closed"
    assert r.admission.queue.in_flight == 0, "its places were given back"


async def test_a_cold_timeout_is_load() -> None:
    """No answer was predicted in time, so none coming is not a fault. A remote server's
    timeout teaches a lower bound on its cost; a local model's passes teach it instead."""
    local = rig(behave="hang")
    scored = await local.score(DOCS, 0.05)
    assert scored.outcome.header == "fallback; reason=timeout"
    assert local.breaker.fail_counter == 0
    assert local.admission.meter.per_pair is None
    remote = rig(behave="hang", info=REMOTE)
    scored = await remote.score(DOCS, 0.05)
    assert scored.outcome.header == "fallback; reason=timeout"
    assert remote.breaker.fail_counter == 0
    per_pair = remote.admission.meter.per_pair
    assert per_pair is not None and per_pair >= 0.04 / 3


async def test_overload_teaches_no_stall() -> None:
    """Parts that ran out of time behind a queue do not make the model look slow: the
    passes set the cost, so the next search, alone, gets its whole window again."""
    r = rig(pass_s=0.001)  # 0.1 ms a pair
    await r.score(WINDOW, 5, query="q0")
    learned = r.admission.meter.per_pair
    r.scorer.answers = len(r.scorer.calls)  # from now on the model is busy elsewhere
    scored = await r.score(WINDOW, 0.05, query="q1")
    assert scored.outcome.header == "fallback; reason=timeout"
    assert r.admission.meter.per_pair == learned
    r.scorer.answers = -1
    again = await r.score(WINDOW, 1, query="q2")
    assert again.outcome.header == "applied"


async def test_a_hang_where_a_quick_answer_was_predicted_is_a_fault() -> None:
    r = rig()
    await r.score(DOCS, 5)  # healthy: the cost is known and small
    r.scorer.behave = "hang"
    scored = await r.score(DOCS, 0.3, query="other")
    assert scored.outcome.header == "fallback; reason=timeout"
    assert r.breaker.fail_counter == 1


@pytest.mark.usefixtures("still_deadlines")
async def test_the_window_is_cut_to_what_the_budget_allows() -> None:
    r = rig()
    r.teach(0.01)  # 10 ms a pair: with the margin of 1.2, 0.255 s afford 21 pairs
    scored = await r.score(WINDOW, 0.255)
    assert scored.outcome.header == "applied; window=21"
    assert scored.scores is not None and len(scored.scores) == 21
    # In ES order, in parts: the top of the window first.
    assert [len(c) for c in r.scorer.calls] == [PART_HITS, PART_HITS, 1]
    assert r.scorer.calls[0][0] == "document 000"
    assert r.breaker.fail_counter == 0


async def test_below_the_minimum_window_es_order_stands_at_once() -> None:
    r = rig()
    r.teach(0.01)
    scored = await r.score(WINDOW, 0.05)
    assert scored.outcome.header == "fallback; reason=budget"
    assert r.scorer.calls == [] and r.breaker.fail_counter == 0


async def test_a_deadline_mid_way_keeps_the_scored_prefix() -> None:
    r = rig(answers=2)
    scored = await r.score(WINDOW, 0.2)
    assert scored.outcome.header == "applied; window=20"
    assert scored.scores is not None and len(scored.scores) == 20
    assert r.breaker.fail_counter == 0 and r.breaker.state == "closed"


@pytest.mark.usefixtures("still_deadlines")
async def test_a_later_page_keeps_the_first_pages_prefix() -> None:
    r = rig()
    r.teach(0.01)
    first = await r.score(WINDOW, 0.255)
    assert first.outcome.header == "applied; window=21"
    calls = len(r.scorer.calls)
    # The budget now allows the whole window, but page two must agree with page one.
    second = await r.score(WINDOW, 60, page_from=10)
    assert second.outcome.header == "cached; window=21"
    assert second.scores == first.scores
    assert len(r.scorer.calls) == calls


async def test_a_half_open_trial_is_one_small_request() -> None:
    clock = Clock()
    r = rig(behave=ModelFailure("bad"), breaker=AsyncBreaker(2, 60, clock=clock))
    for _ in range(2):
        await r.score(WINDOW, 5)
    assert r.breaker.state == "open"
    clock.now += 61
    r.scorer.behave, r.scorer.calls = "ok", []
    trial = await r.score(WINDOW, 5)
    assert [len(c) for c in r.scorer.calls] == [10]
    assert trial.outcome.header == "applied; window=10"
    assert r.breaker.state == "closed"


async def test_an_over_budget_model_is_probed_in_the_background() -> None:
    """A cost learned in a stall cannot switch reranking off for good: after a quiet while,
    a refused search's first hits go to the model in the background (the search is
    answered at once), and what the model does teaches the cost."""
    r = rig()
    r.teach(1.0)  # learned while the model stalled: one second a pair
    started = asyncio.get_running_loop().time()
    scored = await r.score(WINDOW, 1)
    assert scored.outcome.header == "fallback; reason=budget"
    assert asyncio.get_running_loop().time() - started < 0.5, "answered at once"
    assert r.scorer.calls == [], "not before the model has been quiet for a while"
    r.clock.now += 60  # a minute without a model call
    scored = await r.score(WINDOW, 1, query="next")
    assert scored.outcome.header == "fallback; reason=budget"
    await r.admission.drain()  # the probe ran in the background
    assert [len(c) for c in r.scorer.calls] == [10]
    assert r.admission.meter.per_pair is not None and r.admission.meter.per_pair < 1.0
    assert r.breaker.state == "closed"


async def test_a_cached_prefix_that_is_all_that_fits_is_served() -> None:
    clock = Clock()
    r = rig(breaker=AsyncBreaker(1, 60, clock=clock))
    await r.score(WINDOW[:20], 5)  # the top 20 are cached now
    r.teach(1.0)
    calls = len(r.scorer.calls)
    scored = await r.score(WINDOW, 1)
    assert scored.outcome.header == "cached; window=20"
    assert len(r.scorer.calls) == calls
    # And a half-open breaker whose trial fits in the cache is released, not stuck.
    r.breaker.force_open()
    clock.now += 61
    again = await r.score(WINDOW, 1)
    assert again.outcome.header == "cached; window=20"
    r.teach(0.0001)
    fresh = await r.score(WINDOW, 5, query="new query")
    assert fresh.outcome.header.startswith("applied"), "the breaker let a trial through"


async def test_a_local_model_holds_what_it_answers_quickly() -> None:
    """Pairs with a local model at once: what it answers in 250 ms, never fewer than one
    part nor more than 256."""
    for per_pair, size in ((0.1, 10), (0.005, 50), (0.0001, 256)):
        r = rig()
        r.teach(per_pair)
        await r.score(WINDOW[:10], 5, query=f"q {per_pair}")
        assert r.admission.queue.max_pairs == size


async def test_the_rerank_api_takes_turns_in_parts() -> None:
    """A 50-document API request goes to a local model in parts, each admitted on its
    own: a search that arrives after it is served after at most one more of its parts,
    not after all of them. Scores come back in the documents' order."""
    r = rig()
    r.teach(0.1)  # slow: one part with the model
    r.scorer.hold = asyncio.Event()
    texts = [d.text for d in WINDOW]
    big = asyncio.create_task(
        r.engine.score_all(Asker("ip:neighbour", "api"), "q", texts, None, Deadline(30))
    )
    await r.scorer.called.wait()
    hits = [Doc("i", f"s{n}", f"search hit {n}") for n in range(10)]
    search = asyncio.create_task(r.score(hits, 30, asker=Asker("ip:b", "search b")))
    await asyncio.sleep(0)  # one turn of the loop: the search plans and takes its place
    assert r.admission.queue.waiting("ip:b") == 10
    r.scorer.hold.set()
    result = await big
    scored = await search
    assert [len(c) for c in r.scorer.calls] == [10] * 6
    assert [c[0] for c in r.scorer.calls].index("search hit 0") <= 2
    assert result.scores == [float(len(t)) for t in texts]
    assert scored.outcome.header == "applied"
    assert r.admission.queue.in_flight == 0 and r.admission.queue.waiting_pairs == 0


async def test_the_rerank_api_stops_at_the_first_error() -> None:
    r = rig(behave=ModelFailure("bad scores"))
    with pytest.raises(ModelFailure):
        await r.engine.score_all(
            Asker("ip:a", "api"), "q", [d.text for d in WINDOW], None, Deadline(30)
        )
    assert r.admission.queue.in_flight == 0 and r.admission.queue.waiting_pairs == 0
    assert r.breaker.fail_counter == 0, "the API has no say over the search breaker"


async def test_siblings_sharing_a_budget_see_each_others_parts() -> None:
    """Sub-searches of one _msearch start together with one deadline: each takes its place
    in the queue before the next one plans, so the later ones are cut to what is left of
    the budget instead of all queueing past it and timing out."""
    r = rig()
    r.teach(0.1)  # 10 pairs a second; with the margin, 6.66 s afford 55 pairs
    deadline = Deadline(6.66)
    subs = [
        r.engine.score(
            f"q{n}",
            None,
            [Doc("i", f"{n}-{d.id}", d.text) for d in WINDOW[:20]],
            deadline,
            asker=Asker("ip:a", "msearch"),
        )
        for n in range(5)
    ]
    results = await asyncio.gather(*subs)
    headers = [s.outcome.header for s in results]
    # 55 pairs' worth: the first two get their whole windows, the third what is left of
    # it, the last two nothing.
    assert headers == [
        "applied",
        "applied",
        "applied; window=15",
        *["fallback; reason=budget"] * 2,
    ]
    assert sum(len(c) for c in r.scorer.calls) == 55
    assert r.breaker.fail_counter == 0


async def test_waiting_to_be_admitted_is_never_a_hang() -> None:
    """A search that runs out of time at the queue, behind a big rerank-API request, is
    load: the breaker is not told, however quick the model was predicted to be."""
    r = rig()
    r.teach(0.025)  # the queue holds what the model answers in 250 ms: 10 pairs
    r.scorer.hold = asyncio.Event()
    texts = [d.text for d in WINDOW[:10]]
    big = asyncio.create_task(
        r.engine.score_all(Asker("ip:neighbour", "api"), "q", texts, None, Deadline(30))
    )
    await r.scorer.called.wait()  # its one part fills the queue, and the model holds it
    # 20 pairs at 25 ms with the margin: predicted in 0.6 s.
    scored = await r.score(WINDOW[:10], 0.8, asker=Asker("ip:b", "search b"))
    assert scored.outcome.header == "fallback; reason=timeout"
    assert r.breaker.fail_counter == 0
    r.scorer.hold.set()
    await big


async def test_a_remote_hang_opens_the_breaker_even_after_timeouts_raised_the_cost() -> None:
    """A remote server that answered quickly and now hangs: each timeout raises the cost K
    is chosen by, but the hang is judged by what its answers said, so the breaker hears of
    every call that hung where a quick answer was predicted, probes included."""
    r = rig(info=REMOTE)
    await r.score(WINDOW[:10], 5)
    r.scorer.behave = "hang"
    for n in range(4):
        r.clock.now += 60  # long enough for a probe, when the budget no longer fits
        await r.score(WINDOW[:10], 0.3, query=f"hang {n}")
        await r.admission.drain()
        if r.breaker.state == "open":
            break
    assert r.breaker.state == "open"


async def test_a_timeout_inside_the_scorer_after_a_long_wait_is_a_hang() -> None:
    """A remote server that stopped answering says so with its own timeout (connect or
    read): the part was with it far longer than its answers predict, so it counts."""
    r = rig(info=REMOTE)
    await r.score(WINDOW[:10], 5)  # quick answers: cost known

    async def unreachable(*args: object, **kwargs: object) -> ScoreResult:
        await asyncio.sleep(0.2)  # the scorer's own connect timeout: it takes this long
        raise RerankTimeout("connect timeout")

    r.scorer.score = unreachable  # type: ignore[method-assign]
    for n in range(2):
        scored = await r.score(WINDOW[:10], 1, query=f"down {n}")
        assert scored.outcome.header == "fallback; reason=timeout"
    assert r.breaker.state == "open"


def overloaded(r: Rig, client: str, every_s: float = 0.1) -> None:
    """``client`` has asked for 50 pairs every ``every_s`` for a while, of a model that
    answers 100 pairs/s."""
    r.teach(0.01, passes=400)
    share = r.admission.share
    assert share is not None
    for _ in range(1000):
        r.clock.now += every_s
        share.arrive(client, 50)


async def test_under_overload_a_search_takes_its_share_not_all_that_fits() -> None:
    r = rig()
    overloaded(r, "a")
    # 0.245 s affords 20 pairs; the share is 85 pairs/s over 10 searches/s, below the
    # floor of 10, and half the budget is 10 pairs: 10.
    scored = await r.score(WINDOW, 0.245, asker=Asker("a", "search a"))
    assert scored.outcome.header == "applied; window=10"


async def test_a_long_budget_is_not_cut_to_the_share() -> None:
    """A client that sends its next search as soon as an answer comes always asks for more
    than the model answers; with time to wait, its searches still get the whole window."""
    r = rig()
    overloaded(r, "a")
    scored = await r.score(WINDOW, 600, asker=Asker("a", "search a"))
    assert scored.outcome.header == "applied"


async def test_sharing_the_throughput_can_be_switched_off() -> None:
    r = rig(share_throughput=False)
    r.teach(0.01, passes=400)
    scored = await r.score(WINDOW, 0.245, asker=Asker("a", "search a"))
    assert scored.outcome.header == "applied; window=20"


async def test_a_share_above_the_floor_is_what_a_search_takes() -> None:
    r = rig()
    overloaded(r, "a", every_s=0.2)
    # 0.365 s affords 30 pairs and half of it 15; the share is 85 pairs/s over a little
    # more than 5 searches/s (this one arrives too): 16, above both the floor and 15.
    scored = await r.score(WINDOW, 0.365, asker=Asker("a", "search a"))
    assert scored.outcome.header == "applied; window=16"
