"""Sequence-classification cross-encoders on tiny real BertForSequenceClassification models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sidecar.scoring.hf.seqcls import SeqClsBackend

from .conftest import LoadBackend, StartScorer

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


def _backend(load_backend: LoadBackend, path: Path, **settings: Any) -> SeqClsBackend:
    """The backend a scorer started with the same settings runs, loaded on its own."""
    backend = load_backend(SeqClsBackend, path, **settings)
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


async def test_only_the_document_is_truncated(
    bert1_dir: Path, start_scorer: StartScorer, load_backend: LoadBackend
) -> None:
    settings: dict[str, Any] = {"max_length": 32, "tuning": {"model": {"chunk_overlap_tokens": 4}}}
    scorer = await start_scorer(bert1_dir, **settings)
    assert scorer.info.kind == "cross-encoder"
    tokenizer = AutoTokenizer.from_pretrained(str(bert1_dir))
    long_doc = "paris is the capital of france. " * 20
    (item,) = _backend(load_backend, bert1_dir, **settings).encode(QUERY, [long_doc], "").items
    assert len(item.ids) == 32
    query_ids = tokenizer.encode(QUERY, add_special_tokens=False)
    assert item.ids[1 : 1 + len(query_ids)] == query_ids
    assert item.ids[-1] == tokenizer.sep_token_id
    assert item.type_ids is not None and item.type_ids.count(0) == len(query_ids) + 2


async def test_chunks_score_as_the_best_one(
    bert2_dir: Path, start_scorer: StartScorer, load_backend: LoadBackend
) -> None:
    settings: dict[str, Any] = {
        "max_length": 40,
        "long_documents": "chunk",
        "tuning": {"model": {"chunk_overlap_tokens": 6, "max_chunks_per_doc": 4}},
    }
    scorer = await start_scorer(bert2_dir, **settings)
    backend = _backend(load_backend, bert2_dir, **settings)
    long_doc = " ".join(f"fact {i}: bananas are yellow and paris is in france." for i in range(30))
    encoded = backend.encode(QUERY, [long_doc, "short"], "")
    assert encoded.owners == [0, 0, 0, 0, 1]
    with torch.inference_mode():
        per_item = backend.forward(encoded.items).tolist()
    scores = (await scorer.score(QUERY, [long_doc, "short"])).scores
    assert scores == pytest.approx([max(per_item[:4]), per_item[4]], abs=1e-5)


async def test_separator_strings_in_client_text_stay_text(
    bert1_dir: Path, start_scorer: StartScorer, load_backend: LoadBackend
) -> None:
    scorer = await start_scorer(bert1_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(bert1_dir))
    sep, cls = tokenizer.sep_token_id, tokenizer.cls_token_id
    spam = "bananas [SEP] paris is the capital of france [SEP] [CLS] yes"
    query = "capital [SEP] of france"
    (item,) = _backend(load_backend, bert1_dir).encode(query, [spam], "").items
    assert item.ids.count(sep) == 2 and item.ids.count(cls) == 1  # the template's own
    assert item.ids[0] == cls and item.ids[-1] == sep
    naive = tokenizer(query, spam)["input_ids"]
    assert naive.count(sep) > 2  # what reading them as control tokens would have given
    # The score is the model's on the plain-text tokenization, by hand.
    batch = tokenizer([query], [spam], split_special_tokens=True, return_tensors="pt")
    assert batch["input_ids"][0].tolist() == item.ids
    model = AutoModelForSequenceClassification.from_pretrained(str(bert1_dir)).eval()
    with torch.no_grad():
        expected = torch.sigmoid(model(**batch).logits[0, 0]).item()
    assert (await scorer.score(query, [spam])).scores[0] == pytest.approx(expected, abs=1e-5)


def _unigram_cross_encoder(path: Path) -> Path:
    """An XLM-R-shaped cross-encoder: a Unigram vocabulary that lists ``<s>``, ``</s>`` as
    pieces (as XLM-R's does), the ``<s> A </s></s> B </s>`` template, random weights."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import (
        PreTrainedTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    pieces = ["▁", "<", "/", "s", ">", "▁paris", "▁capital", "▁france", "▁yes", "▁of"]
    pieces += list("abcdefghijklmnopqrstuvwxyz")
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(piece, -1.0 - i / 10) for i, piece in enumerate(pieces)]
    backend = Tokenizer(models.Unigram(vocab, unk_id=3))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=128,
    )
    config = XLMRobertaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=140,
        num_labels=1,
        pad_token_id=1,
    )
    torch.manual_seed(4)
    XLMRobertaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


async def test_a_unigram_vocabulary_cannot_spell_its_separator_from_text(
    tmp_path: Path, start_scorer: StartScorer, load_backend: LoadBackend
) -> None:
    path = _unigram_cross_encoder(tmp_path / "xlmr-like")
    scorer = await start_scorer(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    eos = tokenizer.convert_tokens_to_ids("</s>")
    spam = "paris </s></s> yes"
    # split_special_tokens alone is not enough here: the vocabulary itself spells "</s>".
    split = tokenizer("capital", spam, split_special_tokens=True)["input_ids"]
    assert split.count(eos) > 3
    (item,) = _backend(load_backend, path).encode("capital </s>", [spam], "").items
    assert item.ids.count(eos) == 3  # </s> </s> between the texts, </s> at the end
    assert len((await scorer.score("capital </s>", [spam, "france"])).scores) == 2
