"""RerankEngine.score with an in-process scorer whose behaviour each test sets: what it
answers, and how the breaker counts it. No model, no sockets, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from sidecar.config import build_config
from sidecar.errors import ModelFailure, Overloaded, RerankTimeout
from sidecar.rerank.breaker import AsyncBreaker
from sidecar.rerank.demand import Demand
from sidecar.rerank.engine import Doc, RerankEngine
from sidecar.scoring.base import ModelInfo, ScoreResult

DOCS = [Doc("i", "1", "alpha"), Doc("i", "2", "beta"), Doc("i", "3", "gamma")]


@dataclass
class ScriptedScorer:
    """A Scorer that answers what ``behave`` says: scores, or an exception to raise, or
    ``"hang"`` (waits until cancelled). ``answers`` > 0: only that many calls answer, the
    ones after hang."""

    behave: object = "ok"
    answers: int = -1
    #: Seconds each answered call tells the pass observers it took (a local model's worker
    #: reports its passes; a remote one reports none).
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
        timeout: float | None = None,  # noqa: ASYNC109
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
        if self.info.backend != "remote":
            for observe in self.observers:
                observe(len(documents), 0, self.pass_s)
        return ScoreResult([float(len(d)) for d in documents], model_s=0.01, queue_s=0.002)


def engine_with(scorer: ScriptedScorer, **rerank: object) -> RerankEngine:
    config = build_config(
        {
            "es": {"url": "http://127.0.0.1:9"},
            "model": {"name": "http://127.0.0.1:9/rerank"},
            "rerank": {"breaker": {"fail_max": 2, "reset_timeout_s": 60}, **rerank},
        }
    )
    engine = RerankEngine(config, scorer)  # type: ignore[arg-type]
    engine.start_language_gate()
    return engine


async def test_scores_in_order_then_from_the_cache() -> None:
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    first = await engine.score("q", None, DOCS, budget_s=5)
    assert first.outcome.header == "applied"
    assert first.scores == [5.0, 4.0, 5.0]
    assert (first.timings.model_s, first.timings.queue_s) == (0.01, 0.002)
    again = await engine.score("q", None, DOCS, budget_s=5)
    assert again.outcome.header == "cached" and again.scores == first.scores
    assert len(scorer.calls) == 1, "a full cache hit never reaches the model"
    # Only the missing document goes to the model; the others come from the cache.
    more = await engine.score("q", None, [*DOCS, Doc("i", "4", "delta!")], budget_s=5)
    assert more.scores == [5.0, 4.0, 5.0, 6.0]
    assert scorer.calls[-1] == ["delta!"]


async def test_the_instruction_is_part_of_the_cache_key() -> None:
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    await engine.score("q", None, DOCS, budget_s=5)
    await engine.score("q", "Judge by topic", DOCS, budget_s=5)
    assert len(scorer.calls) == 2


@pytest.mark.parametrize(
    ("docs", "ready", "reason"),
    [
        ([], True, "no_hits"),
        (DOCS, False, "model_not_ready"),
        ([Doc("i", "1", ""), Doc("i", "2", "")], True, "no_document_text"),
    ],
)
async def test_skips_without_calling_the_model(docs: list[Doc], ready: bool, reason: str) -> None:
    scorer = ScriptedScorer(ready=ready)
    scored = await engine_with(scorer).score("q", None, docs, budget_s=5)
    assert scored.scores is None
    assert scored.outcome.header == f"skipped; reason={reason}"
    assert scorer.calls == []


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
    engine = engine_with(ScriptedScorer(behave=behave))
    scored = await engine.score("q", None, DOCS, budget_s=0.05)
    assert scored.scores is None
    assert scored.outcome.header == f"fallback; reason={reason}"
    assert engine.breaker.fail_counter == (1 if counted else 0)


async def test_the_breaker_opens_and_then_skips_the_model() -> None:
    scorer = ScriptedScorer(behave=ModelFailure("bad scores"))
    engine = engine_with(scorer)
    for _ in range(2):
        await engine.score("q", None, DOCS, budget_s=5)
    assert engine.breaker.state == "open"
    scored = await engine.score("q", None, DOCS, budget_s=5)
    assert scored.outcome.header == "fallback; reason=breaker_open"
    assert len(scorer.calls) == 2


async def test_a_client_that_goes_away_is_not_a_model_failure() -> None:
    scorer = ScriptedScorer(behave="hang")
    engine = engine_with(scorer)
    task = asyncio.create_task(engine.score("q", None, DOCS, budget_s=60))
    await scorer.called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.breaker.fail_counter == 0
    assert engine.breaker.state == "closed"


WINDOW = [Doc("i", str(n), f"document {n:03d}") for n in range(50)]


REMOTE = ModelInfo("http://rerank.test/", "remote", "test", "remote", "remote", 512)


async def test_a_cold_timeout_is_load() -> None:
    """No answer was predicted in time, so none coming is not a fault. A remote server's
    timeout teaches a lower bound on its cost; a local model's passes teach it instead."""
    local = engine_with(ScriptedScorer(behave="hang"))
    scored = await local.score("q", None, DOCS, budget_s=0.05)
    assert scored.outcome.header == "fallback; reason=timeout"
    assert local.breaker.fail_counter == 0
    assert local.cost.per_pair is None
    remote = engine_with(ScriptedScorer(behave="hang", info=REMOTE))
    scored = await remote.score("q", None, DOCS, budget_s=0.05)
    assert scored.outcome.header == "fallback; reason=timeout"
    assert remote.breaker.fail_counter == 0
    assert remote.cost.per_pair is not None and remote.cost.per_pair >= 0.05 / 3


async def test_overload_teaches_no_stall() -> None:
    """Parts that ran out of time behind a queue do not make the model look slow: the
    passes set the cost, so the next search, alone, gets its whole window again."""
    scorer = ScriptedScorer(pass_s=0.001)  # 0.1 ms a pair
    engine = engine_with(scorer)
    await engine.score("q0", None, WINDOW, budget_s=5)
    learned = engine.cost.per_pair
    scorer.answers = len(scorer.calls)  # from now on the model is busy elsewhere
    scored = await engine.score("q1", None, WINDOW, budget_s=0.05)
    assert scored.outcome.header == "fallback; reason=timeout"
    assert engine.cost.per_pair == learned
    scorer.answers = -1
    again = await engine.score("q2", None, WINDOW, budget_s=1)
    assert again.outcome.header == "applied"


async def test_a_remote_hang_counts_even_after_timeouts_raised_the_cost() -> None:
    """A remote server that answered quickly and now hangs: each timeout raises the cost
    K is chosen by, but the hang is judged by what its answers said, so the breaker hears
    of every call that hung where a quick answer was predicted."""
    scorer = ScriptedScorer(info=REMOTE)
    engine = engine_with(scorer)
    await engine.score("q", None, WINDOW[:10], budget_s=5)
    scorer.behave = "hang"
    for n in range(2):
        engine._last_call -= 60  # past the probe interval: the call goes out
        await engine.score(f"hang {n}", None, WINDOW[:10], budget_s=0.3)
    assert engine.breaker.state == "open"


async def test_a_hang_where_a_quick_answer_was_predicted_is_a_fault() -> None:
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    await engine.score("q", None, DOCS, budget_s=5)  # healthy: the cost is known and small
    scorer.behave = "hang"
    scored = await engine.score("other", None, DOCS, budget_s=0.3)
    assert scored.outcome.header == "fallback; reason=timeout"
    assert engine.breaker.fail_counter == 1


async def test_the_window_is_cut_to_what_the_budget_allows() -> None:
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    engine.cost.per_pair, engine.cost.safety = 0.01, 1.0
    scored = await engine.score("q", None, WINDOW, budget_s=0.255)
    assert scored.outcome.header == "applied; window=25"
    assert scored.scores is not None and len(scored.scores) == 25
    # In ES order, in parts of load.chunk_hits: the top of the window first.
    assert [len(c) for c in scorer.calls] == [10, 10, 5]
    assert scorer.calls[0][0] == "document 000"
    assert engine.breaker.fail_counter == 0


async def test_below_the_minimum_window_es_order_stands() -> None:
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    engine.cost.per_pair, engine.cost.safety = 0.01, 1.0
    scored = await engine.score("q", None, WINDOW, budget_s=0.05)
    assert scored.outcome.header == "fallback; reason=budget"
    assert scorer.calls == [] and engine.breaker.fail_counter == 0


async def test_a_deadline_mid_way_keeps_the_scored_prefix() -> None:
    scorer = ScriptedScorer(answers=2)
    engine = engine_with(scorer)
    scored = await engine.score("q", None, WINDOW, budget_s=0.2)
    assert scored.outcome.header == "applied; window=20"
    assert scored.scores is not None and len(scored.scores) == 20
    assert engine.breaker.fail_counter == 0 and engine.breaker.state == "closed"


async def test_a_later_page_keeps_the_first_pages_prefix() -> None:
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    engine.cost.per_pair, engine.cost.safety = 0.01, 1.0
    first = await engine.score("q", None, WINDOW, budget_s=0.205)
    assert first.outcome.header == "applied; window=20"
    calls = len(scorer.calls)
    # The budget now allows the whole window, but page two must agree with page one.
    engine.cost.per_pair = 0.0001
    second = await engine.score("q", None, WINDOW, budget_s=5, page_from=10)
    assert second.outcome.header == "cached; window=20"
    assert second.scores == first.scores
    assert len(scorer.calls) == calls


async def test_a_half_open_trial_is_one_small_request() -> None:
    now = [0.0]
    scorer = ScriptedScorer(behave=ModelFailure("bad"))
    engine = engine_with(scorer)
    engine.breaker = AsyncBreaker(2, 60, clock=lambda: now[0])
    for _ in range(2):
        await engine.score("q", None, WINDOW, budget_s=5)
    assert engine.breaker.state == "open"
    now[0] = 61.0
    scorer.behave, scorer.calls = "ok", []
    trial = await engine.score("q", None, WINDOW, budget_s=5)
    assert [len(c) for c in scorer.calls] == [10]
    assert trial.outcome.header == "applied; window=10"
    assert engine.breaker.state == "closed"


async def test_an_over_budget_model_is_probed_now_and_then() -> None:
    """A cost learned in a stall cannot switch reranking off for good: after a quiet
    while, one small request goes to the model anyway, and its answer teaches the cost."""
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    engine.cost.per_pair, engine.cost.safety = 10.0, 1.0  # learned while the model stalled
    assert (await engine.score("q", None, WINDOW, budget_s=1)).outcome.header == (
        "fallback; reason=budget"
    )
    engine._last_call -= 60  # a minute without a model call
    probe = await engine.score("q", None, WINDOW, budget_s=1)
    assert [len(c) for c in scorer.calls] == [10]
    assert probe.outcome.header == "applied; window=10"
    assert engine.cost.per_pair < 10.0


async def test_a_cached_prefix_that_is_all_that_fits_is_served() -> None:
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    await engine.score("q", None, WINDOW[:20], budget_s=5)  # the top 20 are cached now
    engine.cost.per_pair, engine.cost.safety = 10.0, 1.0
    calls = len(scorer.calls)
    scored = await engine.score("q", None, WINDOW, budget_s=1)
    assert scored.outcome.header == "cached; window=20"
    assert len(scorer.calls) == calls
    assert engine.breaker.state == "closed"
    # And a half-open breaker whose trial fits in the cache is released, not stuck.
    now = [0.0]
    engine.breaker = AsyncBreaker(1, 60, clock=lambda: now[0])
    engine.breaker.force_open()
    now[0] = 61.0
    again = await engine.score("q", None, WINDOW, budget_s=1)
    assert again.outcome.header == "cached; window=20"
    scorer.behave = "ok"
    engine.cost.per_pair = 0.0001
    fresh = await engine.score("new query", None, WINDOW, budget_s=5)
    assert fresh.outcome.header.startswith("applied"), "the breaker let a trial through"


async def test_a_local_model_holds_what_it_answers_quickly() -> None:
    """Pairs with a local model at once: what it answers in load.in_flight_ms (250 ms),
    never fewer than one part nor more than max_in_flight_pairs."""
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    for per_pair, size in ((0.1, 10), (0.005, 50), (0.0001, 256)):
        engine.cost.answered = engine.cost.per_pair = per_pair
        await engine.score(f"q {per_pair}", None, WINDOW[:10], budget_s=5)
        assert engine.gate.max_pairs == size


async def test_the_rerank_api_takes_turns_in_parts() -> None:
    """A 50-document API request goes to a local model in parts of chunk_hits, each
    admitted on its own: a search that arrives after it is served after at most one more
    of its parts, not after all of them. Scores come back in the documents' order."""
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    engine.cost.answered = engine.cost.per_pair = 0.1  # slow: one part with the model
    scorer.hold = asyncio.Event()
    big = asyncio.create_task(
        engine.score_all("ip:neighbour", "q", [d.text for d in WINDOW], None, 30)
    )
    await scorer.called.wait()
    hits = [Doc("i", f"s{n}", f"search hit {n}") for n in range(10)]
    search = asyncio.create_task(engine.score("q", None, hits, budget_s=30, client="ip:b"))
    for _ in range(100):  # turns of the loop (not time) until the search waits its turn
        if engine.gate.waiting("ip:b").own_pairs:
            break
        await asyncio.sleep(0)
    assert engine.gate.waiting("ip:b").own_pairs == 10
    scorer.hold.set()
    result = await big
    scored = await search
    assert [len(c) for c in scorer.calls] == [10] * 6
    assert [c[0] for c in scorer.calls].index("search hit 0") <= 2
    assert result.scores == [float(len(d.text)) for d in WINDOW]
    assert scored.outcome.header == "applied"
    assert engine.gate.in_flight == 0 and engine.gate.waiting_pairs == 0


async def test_the_rerank_api_stops_at_the_first_error() -> None:
    scorer = ScriptedScorer(behave=ModelFailure("bad scores"))
    engine = engine_with(scorer)
    with pytest.raises(ModelFailure):
        await engine.score_all("ip:a", "q", [d.text for d in WINDOW], None, 30)
    assert engine.gate.in_flight == 0 and engine.gate.waiting_pairs == 0
    assert engine.breaker.fail_counter == 0, "the API has no say over the search breaker"


async def test_siblings_sharing_a_budget_see_each_others_parts() -> None:
    """Sub-searches of one _msearch start together with one deadline: each takes its place
    in the queue before the next one plans, so the later ones are cut to what is left of
    the budget instead of all queueing past it and timing out."""
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    engine.cost.answered = engine.cost.per_pair = 0.1  # 10 pairs a second
    engine.cost.safety = 1.0
    loop = asyncio.get_running_loop()
    end = loop.time() + 5.55  # 55.5 pairs' worth
    subs = [
        engine.score(
            f"q{n}",
            None,
            [Doc("i", f"{n}-{d.id}", d.text) for d in WINDOW[:20]],
            budget_s=5.0,
            client="ip:a",
            deadline=end,
        )
        for n in range(5)
    ]
    results = await asyncio.gather(*subs)
    headers = [r.outcome.header for r in results]
    # 55 pairs' worth: the first two get their whole windows, the third what is left of
    # it (10 with the model and 30 queued before it), the last two nothing.
    assert headers == [
        "applied",
        "applied",
        "applied; window=15",
        *["fallback; reason=budget"] * 2,
    ]
    assert sum(len(c) for c in scorer.calls) == 55
    assert engine.breaker.fail_counter == 0


async def test_waiting_to_be_admitted_is_never_a_hang() -> None:
    """A search that runs out of time at the gate, behind a big rerank-API request, is
    load: the breaker is not told, however quick the model was predicted to be."""
    scorer = ScriptedScorer()
    engine = engine_with(scorer, load={"max_in_flight_pairs": 10})
    engine.cost.answered = engine.cost.per_pair = 0.001
    scorer.hold = asyncio.Event()
    big = asyncio.create_task(
        engine.score_all("ip:neighbour", "q", [d.text for d in WINDOW[:10]], None, 30)
    )
    await scorer.called.wait()  # its one part fills the gate, and the model holds it
    scored = await engine.score("q", None, WINDOW[:10], budget_s=0.05, client="ip:b")
    assert scored.outcome.header == "fallback; reason=timeout"
    assert engine.breaker.fail_counter == 0
    scorer.hold.set()
    await big


async def test_a_timeout_inside_the_scorer_after_a_long_wait_is_a_hang() -> None:
    """A remote server that stopped answering says so with its own timeout (connect or
    read): the part was with it far longer than its answers predict, so it counts."""
    scorer = ScriptedScorer(info=REMOTE)
    engine = engine_with(scorer)
    await engine.score("q", None, WINDOW[:10], budget_s=5)  # quick answers: cost known

    async def unreachable(*args: object, **kwargs: object) -> ScoreResult:
        await asyncio.sleep(0.2)  # the scorer's own connect timeout, as it were
        raise RerankTimeout("connect timeout")

    scorer.score = unreachable  # type: ignore[method-assign]
    for n in range(2):
        scored = await engine.score(f"down {n}", None, WINDOW[:10], budget_s=1)
        assert scored.outcome.header == "fallback; reason=timeout"
    assert engine.breaker.state == "open"


def overloaded(engine: RerankEngine, client: str, every_s: float = 0.1) -> None:
    """``client`` has asked for 50 pairs every ``every_s`` for a while, of a model that
    answers 100 pairs/s."""
    now = [0.0]
    engine.demand = Demand(clock=lambda: now[0])
    for _ in range(1000):
        now[0] += every_s
        engine.demand.arrive(client, 50)
    engine.cost.per_pair = engine.cost.steady = 0.01
    engine.cost.safety = 1.0


async def test_under_overload_a_search_takes_its_share_not_all_that_fits() -> None:
    engine = engine_with(ScriptedScorer())
    overloaded(engine, "a")
    # 0.205 s affords 20 pairs; the share is 85 pairs/s over 10 searches/s, below the
    # floor of 10, and half the budget is 10 pairs: 10.
    scored = await engine.score("q", None, WINDOW, budget_s=0.205, client="a")
    assert scored.outcome.header == "applied; window=10"


async def test_a_long_budget_is_not_cut_to_the_share() -> None:
    """A client that sends its next search as soon as an answer comes always asks for more
    than the model answers; with time to wait, its searches still get the whole window."""
    engine = engine_with(ScriptedScorer())
    overloaded(engine, "a")
    scored = await engine.score("q", None, WINDOW, budget_s=600, client="a")
    assert scored.outcome.header == "applied"


async def test_sharing_the_throughput_can_be_switched_off() -> None:
    engine = engine_with(ScriptedScorer(), load={"share_throughput": False})
    overloaded(engine, "a")
    scored = await engine.score("q", None, WINDOW, budget_s=0.205, client="a")
    assert scored.outcome.header == "applied; window=20"


async def test_a_share_above_the_floor_is_what_a_search_takes() -> None:
    engine = engine_with(ScriptedScorer())
    overloaded(engine, "a", every_s=0.2)
    # 0.305 s affords 30 pairs and half of it 15; the share is 85 pairs/s over a little
    # more than 5 searches/s (this one arrives too): 16, above both the floor and 15.
    scored = await engine.score("q", None, WINDOW, budget_s=0.305, client="a")
    assert scored.outcome.header == "applied; window=16"
