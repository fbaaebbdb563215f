"""Qwen3-Reranker (0.6B, 4B, 8B): a causal LM asked whether the document answers the query.

The score is P("yes") from a softmax over the "yes" and "no" logits at the last position of
the official prompt. The prompt must match the one the model was trained with, token for
token, so it is built here exactly as Qwen's reference code builds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from sidecar.errors import ModelFailure, ModelLoadError
from sidecar.scoring.base import ModelInfo
from sidecar.scoring.hf.base import HFBackend, Loaded
from sidecar.scoring.hf.chunking import windows
from sidecar.scoring.hf.device import attention_implementation
from sidecar.scoring.local.backend import Encoded, Item

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def format_body(instruction: str, query: str, document: str) -> str:
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


def format_prompt(instruction: str, query: str, document: str) -> str:
    return PREFIX + format_body(instruction, query, document) + SUFFIX


def _head(instruction: str, query: str) -> str:
    # The body up to the document, without the space before it: the document is tokenized as
    # " " + text. Qwen's pre-tokenizer always splits between ":" and a following space, so
    # the two halves tokenize exactly as the whole body would, and the document can then be
    # truncated in tokens without re-tokenizing anything.
    return format_body(instruction, query, "")[:-1]


def token_id(tokenizer: PreTrainedTokenizerBase, token: str, *, model: str) -> int:
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int) or found < 0 or found == tokenizer.unk_token_id:
        raise ModelLoadError(
            f"model {model!r}: its tokenizer has no {token!r} token, so it cannot be served as "
            f"a Qwen3 reranker (the score is P(yes) over the 'yes' and 'no' tokens)"
        )
    return found


def _config_int(model: torch.nn.Module, key: str) -> int | None:
    value = getattr(getattr(model, "config", None), key, None)
    return value if isinstance(value, int) else None


@dataclass(frozen=True)
class _Loaded(Loaded):
    prefix: list[int]
    suffix: list[int]
    yes: int
    no: int


class Qwen3Backend(HFBackend[_Loaded]):
    backend = "qwen3"

    def _load(self, files: Path) -> tuple[_Loaded, ModelInfo]:
        name = self._config.name
        tokenizer = self._tokenizer(files, padding_side="left")
        yes = token_id(tokenizer, "yes", model=name)
        no = token_id(tokenizer, "no", model=name)
        attention = attention_implementation(self._device, self._dtype)
        model = self._weights(
            AutoModelForCausalLM.from_pretrained, files, attn_implementation=attention
        )
        vocab = _config_int(model, "vocab_size")
        if vocab is not None and max(yes, no) >= vocab:
            raise ModelLoadError(
                f"model {name!r}: the 'yes'/'no' token ids ({yes}, {no}) are outside its "
                f"output vocabulary of {vocab}; tokenizer and weights do not match"
            )
        state = _Loaded(
            tokenizer=tokenizer,
            model=model,
            prefix=tokenizer.encode(PREFIX, add_special_tokens=False),
            suffix=tokenizer.encode(SUFFIX, add_special_tokens=False),
            yes=yes,
            no=no,
        )
        positions = _config_int(model, "max_position_embeddings")
        info = replace(
            self.info,
            source=str(files),
            max_length=min(self._config.max_length, positions or self._config.max_length),
            extra={"attention": attention},
        )
        return state, info

    def encode(self, query: str, documents: Sequence[str], instruction: str) -> Encoded:
        state = self._loaded()
        with self._tokenizer_lock:
            head: list[int] = state.tokenizer.encode(
                _head(instruction, query), add_special_tokens=False
            )
            docs: list[list[int]] = state.tokenizer(
                [" " + doc for doc in documents],
                add_special_tokens=False,
                return_attention_mask=False,
            )["input_ids"]
        start = state.prefix + head
        budget = self.info.max_length - len(start) - len(state.suffix)
        if budget < 1:
            # Cutting the query or instruction would change the question; refuse instead.
            raise ModelFailure("the query and instruction alone exceed model.max_length")
        items: list[Item] = []
        owners: list[int] = []
        for index, doc in enumerate(docs):
            for piece in self._fit(doc, budget):
                items.append(Item(start + piece + state.suffix))
                owners.append(index)
        return Encoded(items, owners, len(documents))

    def _fit(self, doc: list[int], budget: int) -> list[list[int]]:
        if self._config.long_documents == "chunk":
            return windows(
                doc, budget, self._config.chunk_overlap_tokens, self._config.max_chunks_per_doc
            )
        return [doc[:budget]]

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        state = self._loaded()
        inputs = self._inputs(items, left=True)
        # With left padding the real tokens must still start at position 0, or a document
        # would score differently alone and inside a batch.
        positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp_(min=0)
        out = state.model(**inputs, position_ids=positions, use_cache=False, logits_to_keep=1)
        last = out.logits[:, -1, :]
        pair = torch.stack((last[:, state.no], last[:, state.yes]), dim=1).float()
        return pair.log_softmax(dim=-1)[:, 1].exp().cpu()
