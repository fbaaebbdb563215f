"""Qwen3-Reranker (0.6B, 4B, 8B): a causal LM asked whether the document answers the query.

The score is P("yes") from a softmax over the "yes" and "no" logits at the last position of
the official prompt. The prompt must match the one the model was trained with, token for
token, so it is built here exactly as Qwen's reference code builds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from sidecar.errors import ModelFailure, ModelLoadError
from sidecar.scoring.hf.base import TransformersBackend, not_loaded
from sidecar.scoring.hf.chunking import windows
from sidecar.scoring.hf.device import attention_implementation
from sidecar.scoring.hf.load import load_tokenizer, load_weights
from sidecar.scoring.local.backend import Encoded, Item, max_per_document
from sidecar.scoring.local.collate import collate

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
class _Loaded:
    tokenizer: PreTrainedTokenizerBase
    model: torch.nn.Module
    prefix: list[int]
    suffix: list[int]
    yes: int
    no: int
    pad: int


class Qwen3Backend(TransformersBackend):
    kind = "causal-lm reranker"

    _state: _Loaded | None = None

    def load(self) -> None:
        name = self._config.name
        files = self._model_files()
        tokenizer = load_tokenizer(files, model=name, padding_side="left")
        yes = token_id(tokenizer, "yes", model=name)
        no = token_id(tokenizer, "no", model=name)
        attention = attention_implementation(self._device, self._dtype)
        model = load_weights(
            AutoModelForCausalLM.from_pretrained,
            files,
            model=name,
            device=self._device,
            dtype=self._dtype,
            attn_implementation=attention,
        )
        vocab = _config_int(model, "vocab_size")
        if vocab is not None and max(yes, no) >= vocab:
            raise ModelLoadError(
                f"model {name!r}: the 'yes'/'no' token ids ({yes}, {no}) are outside its "
                f"output vocabulary of {vocab}; tokenizer and weights do not match"
            )
        pad = tokenizer.pad_token_id
        self._state = _Loaded(
            tokenizer=tokenizer,
            model=model,
            prefix=tokenizer.encode(PREFIX, add_special_tokens=False),
            suffix=tokenizer.encode(SUFFIX, add_special_tokens=False),
            yes=yes,
            no=no,
            # Padded positions are masked out, so any id does when the tokenizer names none.
            pad=pad if isinstance(pad, int) else 0,
        )
        positions = _config_int(model, "max_position_embeddings")
        self.info = replace(
            self.info,
            source=str(files),
            max_length=min(self._config.max_length, positions or self._config.max_length),
            extra={"attention": attention},
        )

    def _loaded(self) -> _Loaded:
        if self._state is None:
            raise not_loaded(self._config.name)
        return self._state

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
        batch = collate(items, state.pad, left=True)
        # With left padding the real tokens must still start at position 0, or a document
        # would score differently alone and inside a batch.
        positions = (batch.attention_mask.cumsum(-1) - 1).clamp_(min=0)
        device = self._device
        out = state.model(
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            position_ids=positions.to(device),
            use_cache=False,
            logits_to_keep=1,
        )
        last = out.logits[:, -1, :]
        pair = torch.stack((last[:, state.no], last[:, state.yes]), dim=1).float()
        return pair.log_softmax(dim=-1)[:, 1].exp().cpu()

    def combine(self, encoded: Encoded, outputs: torch.Tensor) -> list[float]:
        return max_per_document(outputs, encoded.owners, encoded.n_docs)
