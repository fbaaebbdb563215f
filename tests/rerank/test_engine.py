"""RerankEngine.score with an in-process scorer whose behaviour each test sets: what it
answers, and how the breaker counts it. No model, no sockets, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from sidecar.config import build_config
from sidecar.errors import ModelFailure, Overloaded
from sidecar.rerank.breaker import AsyncBreaker
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
    ready: bool = True
    calls: list[list[str]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    info: ModelInfo = field(
        default_factory=lambda: ModelInfo("scripted", "seqcls", "test", "cpu", "fp32", 512)
    )
    queued_pairs: int = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def add_batch_observer(self, observer: object) -> None:
        return None

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> ScoreResult:
        self.calls.append(list(documents))
        self.called.set()
        if self.behave == "hang" or 0 <= self.answers < len(self.calls):
            await asyncio.Event().wait()
        if isinstance(self.behave, BaseException):
            raise self.behave
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


async def test_a_cold_timeout_is_load_and_teaches_the_cost() -> None:
    engine = engine_with(ScriptedScorer(behave="hang"))
    scored = await engine.score("q", None, DOCS, budget_s=0.05)
    assert scored.outcome.header == "fallback; reason=timeout"
    assert engine.breaker.fail_counter == 0, "no answer was predicted in time: not a fault"
    assert engine.cost.per_pair is not None and engine.cost.per_pair >= 0.05 / 3


async def test_a_hang_where_a_quick_answer_was_predicted_is_a_fault() -> None:
    scorer = ScriptedScorer()
    engine = engine_with(scorer)
    await engine.score("q", None, DOCS, budget_s=5)  # healthy: the cost is known and small
    scorer.behave = "hang"
    scored = await engine.score("other", None, DOCS, budget_s=0.05)
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
