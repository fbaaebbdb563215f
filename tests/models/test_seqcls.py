"""Sequence-classification cross-encoders on tiny real BertForSequenceClassification models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sidecar.scoring.hf.seqcls import SeqClsBackend
from sidecar.scoring.local.scorer import LocalScorer

from .conftest import StartScorer

QUERY = "what is the capital of france"
DOCS = [
    "paris is the capital and largest city of france.",
    "berlin is the capital of germany.",
    "bananas are rich in potassium, and they are yellow when ripe.",
]


def _logits_by_hand(path: Path, query: str, docs: list[str]) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    batch = tokenizer([query] * len(docs), docs, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits: torch.Tensor = model(**batch).logits
    return logits


def _backend(scorer: object) -> SeqClsBackend:
    assert isinstance(scorer, LocalScorer)
    backend = scorer._backend
    assert isinstance(backend, SeqClsBackend)
    return backend


async def test_one_label_is_a_sigmoid(bert1_dir: Path, start_scorer: StartScorer) -> None:
    scorer = await start_scorer(bert1_dir)
    assert scorer.info.kind == "cross-encoder"
    assert scorer.info.max_length == 512  # bounded by the model, not the 8192 default
    logits = _logits_by_hand(bert1_dir, QUERY, DOCS)
    expected = [1 / (1 + float(torch.exp(-logit[0]))) for logit in logits]
    assert (await scorer.score(QUERY, DOCS)).scores == pytest.approx(expected, abs=1e-5)


async def test_two_labels_are_a_softmax(bert2_dir: Path, start_scorer: StartScorer) -> None:
    scorer = await start_scorer(bert2_dir)
    logits = _logits_by_hand(bert2_dir, QUERY, DOCS)
    expected = [
        float(torch.exp(logit[1]) / (torch.exp(logit[0]) + torch.exp(logit[1]))) for logit in logits
    ]
    assert (await scorer.score(QUERY, DOCS)).scores == pytest.approx(expected, abs=1e-5)


async def test_only_the_document_is_truncated(bert1_dir: Path, start_scorer: StartScorer) -> None:
    scorer = await start_scorer(bert1_dir, max_length=32, chunk_overlap_tokens=4)
    tokenizer = AutoTokenizer.from_pretrained(str(bert1_dir))
    long_doc = "paris is the capital of france. " * 20
    (item,) = _backend(scorer).encode(QUERY, [long_doc], "").items
    assert len(item.ids) == 32
    query_ids = tokenizer.encode(QUERY, add_special_tokens=False)
    assert item.ids[1 : 1 + len(query_ids)] == query_ids
    assert item.ids[-1] == tokenizer.sep_token_id
    assert item.type_ids is not None and item.type_ids.count(0) == len(query_ids) + 2


async def test_chunks_score_as_the_best_one(bert2_dir: Path, start_scorer: StartScorer) -> None:
    scorer = await start_scorer(
        bert2_dir,
        max_length=40,
        long_documents="chunk",
        chunk_overlap_tokens=6,
        max_chunks_per_doc=4,
    )
    backend = _backend(scorer)
    long_doc = " ".join(f"fact {i}: bananas are yellow and paris is in france." for i in range(30))
    encoded = backend.encode(QUERY, [long_doc, "short"], "")
    assert encoded.owners == [0, 0, 0, 0, 1]
    with torch.inference_mode():
        per_item = backend.forward(encoded.items).tolist()
    scores = (await scorer.score(QUERY, [long_doc, "short"])).scores
    assert scores == pytest.approx([max(per_item[:4]), per_item[4]], abs=1e-5)
