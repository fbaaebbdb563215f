"""The start-up self-test: a model that does not rank the relevant documents first, or gives
every pair the same score, is refused, and /_sidecar/ready says why."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest
import torch
from transformers import AutoTokenizer, Qwen3ForCausalLM

from devtools.fakes import FaultES
from sidecar.errors import RerankUnavailable
from sidecar.keys import SCORER
from sidecar.scoring.local.scorer import SELF_TEST
from tests.support.apps import running_sidecar

from .conftest import StartScorer

BUNDLED = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def same_score_dir(qwen_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen3 with identical "yes" and "no" rows in its output projection: every
    pair scores exactly 0.5, like a server that lost the reranker's head."""
    path = tmp_path_factory.mktemp("qwen3-same-score")
    model = Qwen3ForCausalLM.from_pretrained(str(qwen_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(qwen_dir))
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    with torch.no_grad():
        model.lm_head.weight[yes] = model.lm_head.weight[no]
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(qwen_dir / name, path / name)
    return path


async def test_a_working_model_passes_and_is_served(start_scorer: StartScorer) -> None:
    scorer = await start_scorer(BUNDLED, self_test=True)
    assert scorer.ready and scorer.info.refused is None
    for query, good, bad in SELF_TEST:
        relevant, irrelevant = (await scorer.score(query, [good, bad])).scores
        assert relevant > irrelevant + 0.3  # by far, so the test cannot flip on noise


async def test_a_model_that_scores_everything_the_same_is_refused(
    same_score_dir: Path, start_scorer: StartScorer
) -> None:
    scorer = await start_scorer(same_score_dir, self_test=True)
    assert not scorer.ready
    assert scorer.info.refused is not None
    assert "failed its start-up self-test" in scorer.info.refused
    assert "every score is the same (0.5)" in scorer.info.refused
    with pytest.raises(RerankUnavailable):
        await scorer.score("q", ["d"])


async def test_a_model_that_ranks_at_random_is_refused(
    qwen_dir: Path, start_scorer: StartScorer
) -> None:
    # The tiny model's random weights put two of the three irrelevant documents first
    # (seeded: by 0.009 and 0.0017, far above float noise).
    scorer = await start_scorer(qwen_dir, self_test=True)
    assert not scorer.ready
    refused = scorer.info.refused or ""
    assert "the relevant document did not win for" in refused
    assert repr(SELF_TEST[1][0]) in refused and repr(SELF_TEST[2][0]) in refused
    assert repr(SELF_TEST[0][0]) not in refused


async def test_with_the_self_test_off_the_same_model_is_served(
    qwen_dir: Path, start_scorer: StartScorer
) -> None:
    scorer = await start_scorer(qwen_dir, self_test=False)
    assert scorer.ready and scorer.info.refused is None


async def test_ready_names_the_refusal(same_score_dir: Path) -> None:
    async with FaultES(hits=3) as es:
        config = {"es": {"url": es.url}, "model": {"name": str(same_score_dir)}}
        async with running_sidecar(config, wait_model=False) as sc:
            # The app loads the model in a background task; wait for that task itself.
            loading = [
                task
                for task in asyncio.all_tasks()
                if getattr(task.get_coro(), "__qualname__", "") == "_load_model"
            ]
            assert len(loading) == 1
            await loading[0]
            assert sc.app[SCORER].info.refused is not None
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{sc.url}/_sidecar/ready") as r,
            ):
                status, body = r.status, await r.json()
    # Served in ES order: ready (a probe must not take search away), not reranking.
    assert status == 200
    assert (body["ready"], body["reranking"]) == (True, False)
    assert body["model"]["warm"] is False
    assert "every score is the same" in body["model"]["refused"]
    assert body["model"]["warnings"] == []
