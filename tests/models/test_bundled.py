"""The bundled all-MiniLM-L6-v2 bi-encoder, with its real weights, fully offline."""

from __future__ import annotations

import logging

import pytest
from sentence_transformers import SentenceTransformer

from sidecar.config import ModelConfig
from sidecar.scoring.bundled import bundled_path
from sidecar.scoring.detect import resolve_model

from .conftest import StartScorer

NAME = "sentence-transformers/all-MiniLM-L6-v2"
QUERY = "What is the capital of France?"
DOCS = [
    "Berlin is the capital and largest city of Germany.",
    "Bananas are an excellent source of potassium.",
    "Paris is the capital of France and its most populous city.",
    "The French Revolution began in 1789.",
]


@pytest.mark.parametrize("name", [NAME, "all-MiniLM-L6-v2"])
def test_both_names_resolve_to_the_package(name: str) -> None:
    resolved = resolve_model(ModelConfig(name=name))
    assert resolved.backend == "biencoder"
    assert resolved.bundled
    assert resolved.directory == bundled_path(NAME)


async def test_ranks_the_relevant_passage_first(
    start_scorer: StartScorer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sidecar.models"):
        scorer = await start_scorer(NAME)
    assert scorer.info.kind == "bi-encoder"
    assert scorer.info.languages == ("en",)
    assert scorer.info.max_length == 256
    assert "this is a bi-encoder" in caplog.text and "NOT a cross-encoder" in caplog.text
    scores = (await scorer.score(QUERY, DOCS)).scores
    assert max(range(len(DOCS)), key=scores.__getitem__) == 2
    assert scores[1] < scores[0] < scores[2]


async def test_scores_are_the_cosines_sentence_transformers_computes(
    start_scorer: StartScorer,
) -> None:
    scorer = await start_scorer(NAME)
    reference = SentenceTransformer(str(bundled_path(NAME)), device="cpu")
    embeddings = reference.encode([QUERY, *DOCS], normalize_embeddings=True)
    expected = [float(embeddings[0] @ doc) for doc in embeddings[1:]]
    assert (await scorer.score(QUERY, DOCS)).scores == pytest.approx(expected, abs=1e-5)


async def test_configured_languages_win(start_scorer: StartScorer) -> None:
    scorer = await start_scorer(NAME, languages=("en", "de"))
    assert scorer.info.languages == ("en", "de")
