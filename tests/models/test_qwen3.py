"""The Qwen3-Reranker backend on a tiny real Qwen3ForCausalLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sidecar.errors import ModelLoadError
from sidecar.scoring.hf.qwen3 import PREFIX, SUFFIX, Qwen3Backend, format_prompt

from .conftest import LoadBackend, StartScorer

INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany.",
    "2024: bananas are rich in potassium.",
    "\nA document that starts on a new line.",
    "",
]


def _backend(load_backend: LoadBackend, path: Path, **settings: Any) -> Qwen3Backend:
    """The backend a scorer started with the same settings runs, loaded on its own."""
    backend = load_backend(Qwen3Backend, path, **settings)
    assert isinstance(backend, Qwen3Backend)
    return backend


def test_prompt_is_the_official_template() -> None:
    assert format_prompt("Be strict", "q?", "d.") == (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
        'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
        "<|im_end|>\n<|im_start|>user\n"
        "<Instruct>: Be strict\n<Query>: q?\n<Document>: d."
        "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


async def test_token_layout_is_prefix_body_suffix(
    qwen_dir: Path, start_scorer: StartScorer, load_backend: LoadBackend
) -> None:
    plain = {"model": {"prefix_reuse": False}}
    scorer = await start_scorer(qwen_dir, tuning=plain)
    assert scorer.info.kind == "causal-lm reranker"
    tokenizer = AutoTokenizer.from_pretrained(str(qwen_dir))
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    encoded = _backend(load_backend, qwen_dir, tuning=plain).encode(QUERY, DOCS, INSTRUCTION)
    assert encoded.owners == list(range(len(DOCS)))
    for doc, item in zip(DOCS, encoded.items, strict=True):
        assert item.ids[: len(prefix)] == prefix
        assert item.ids[-len(suffix) :] == suffix
        assert tokenizer.decode(item.ids) == format_prompt(INSTRUCTION, QUERY, doc)
        # Tokenizing body and document apart gives exactly the tokens of the whole prompt.
        whole = tokenizer.encode(format_prompt(INSTRUCTION, QUERY, doc), add_special_tokens=False)
        assert item.ids == whole
    # With the shared prefix, each item is the document and the suffix after one prefix.
    reused = _backend(load_backend, qwen_dir).encode(QUERY, DOCS, INSTRUCTION)
    prefixes = {id(item.prefix) for item in reused.items}
    assert len(prefixes) == 1 and None not in {item.prefix for item in reused.items}
    for plain, item in zip(encoded.items, reused.items, strict=True):
        assert item.prefix is not None and item.prefix.ids + item.ids == plain.ids
    assert reused.tokens == encoded.tokens - (len(DOCS) - 1) * len(reused.items[0].prefix.ids)


def _p_yes_by_hand(qwen_dir: Path, prompt: str) -> float:
    tokenizer = AutoTokenizer.from_pretrained(str(qwen_dir))
    model = AutoModelForCausalLM.from_pretrained(str(qwen_dir), dtype=torch.float32).eval()
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    return float(torch.softmax(torch.stack([logits[yes], logits[no]]), dim=0)[0])


async def test_score_is_softmax_of_yes_over_no(
    qwen_dir: Path, start_scorer: StartScorer, load_backend: LoadBackend
) -> None:
    scorer = await start_scorer(qwen_dir, instruction=INSTRUCTION)
    result = await scorer.score(QUERY, DOCS[:1])
    expected = _p_yes_by_hand(qwen_dir, format_prompt(INSTRUCTION, QUERY, DOCS[0]))
    assert result.scores[0] == pytest.approx(expected, abs=1e-5)
    assert 0.0 < result.scores[0] < 1.0
    backend = _backend(load_backend, qwen_dir, instruction=INSTRUCTION)
    (item,) = backend.encode(QUERY, DOCS[:1], INSTRUCTION).items
    assert item.prefix is not None
    assert result.tokens == len(item.prefix.ids) + len(item.ids)


async def test_explicit_instruction_is_used(qwen_dir: Path, start_scorer: StartScorer) -> None:
    scorer = await start_scorer(qwen_dir)
    result = await scorer.score(QUERY, DOCS[:1], "Find recipes")
    expected = _p_yes_by_hand(qwen_dir, format_prompt("Find recipes", QUERY, DOCS[0]))
    assert result.scores[0] == pytest.approx(expected, abs=1e-5)


async def test_same_score_alone_and_in_a_padded_batch(
    qwen_dir: Path, start_scorer: StartScorer, load_backend: LoadBackend
) -> None:
    scorer = await start_scorer(qwen_dir)
    short = "Paris."
    longer = [
        "Paris is the capital and largest city of France. " * 6,
        "Berlin is the capital of Germany, and bananas are rich in potassium. " * 4,
    ]
    alone = (await scorer.score(QUERY, [short])).scores[0]
    batched = (await scorer.score(QUERY, [longer[0], short, longer[1]])).scores
    assert batched[1] == pytest.approx(alone, abs=1e-5)
    encoded = _backend(load_backend, qwen_dir).encode(QUERY, [longer[0], short], INSTRUCTION)
    assert len(encoded.items[0].ids) > len(encoded.items[1].ids) + 20  # really padded


async def test_truncation_cuts_only_the_document(
    qwen_dir: Path, start_scorer: StartScorer, load_backend: LoadBackend
) -> None:
    plain = {"model": {"prefix_reuse": False}}
    scorer = await start_scorer(qwen_dir, max_length=120, tuning=plain)
    tokenizer = AutoTokenizer.from_pretrained(str(qwen_dir))
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    long_doc = "Paris is the capital and largest city of France. " * 40
    backend = _backend(load_backend, qwen_dir, max_length=120, tuning=plain)
    (item,) = backend.encode(QUERY, [long_doc], INSTRUCTION).items
    assert len(item.ids) == 120
    assert item.ids[-len(suffix) :] == suffix
    text = tokenizer.decode(item.ids)
    assert f"<Query>: {QUERY}\n<Document>: Paris is" in text
    assert text.endswith(SUFFIX)
    scores = (await scorer.score(QUERY, [long_doc, "short"])).scores
    assert len(scores) == 2


async def test_a_query_that_leaves_no_room_is_refused(
    qwen_dir: Path, start_scorer: StartScorer
) -> None:
    from sidecar.errors import InputTooLong

    scorer = await start_scorer(qwen_dir, max_length=120)
    with pytest.raises(InputTooLong):
        await scorer.score("a very long query " * 30, ["doc"])


async def test_chunked_document_scores_as_its_best_window(
    qwen_dir: Path, start_scorer: StartScorer, load_backend: LoadBackend
) -> None:
    settings: dict[str, Any] = {
        "max_length": 110,
        "long_documents": "chunk",
        "tuning": {
            "model": {"chunk_overlap_tokens": 10, "max_chunks_per_doc": 3, "prefix_reuse": False}
        },
    }
    scorer = await start_scorer(qwen_dir, **settings)
    backend = _backend(load_backend, qwen_dir, **settings)
    long_doc = " ".join(f"Sentence {i} says Paris is in France." for i in range(60))
    encoded = backend.encode(QUERY, ["short one", long_doc], INSTRUCTION)
    assert encoded.owners == [0, 1, 1, 1]
    head = len(encoded.items[1].ids) - 110
    assert head == 0 and all(len(item.ids) == 110 for item in encoded.items[1:])
    with torch.inference_mode():
        per_chunk = backend.forward(encoded.items).tolist()
    scores = (await scorer.score(QUERY, ["short one", long_doc])).scores
    assert scores[0] == pytest.approx(per_chunk[0], abs=1e-5)
    assert scores[1] == pytest.approx(max(per_chunk[1:]), abs=1e-5)


async def test_missing_yes_token_is_a_clear_load_error(
    qwen_dir_without_yes: Path, start_scorer: StartScorer
) -> None:
    with pytest.raises(ModelLoadError, match=r"no 'yes' token"):
        await start_scorer(qwen_dir_without_yes)
