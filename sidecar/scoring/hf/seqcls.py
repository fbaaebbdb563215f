"""Cross-encoders with a classification head (bge-reranker-v2-m3, ms-marco MiniLM, ...).

The pair is tokenized as (query, document) and only the document is truncated. One logit is
a relevance logit (score = sigmoid); two logits are (irrelevant, relevant) classes (score =
softmax of the second).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase

from sidecar.errors import ModelLoadError
from sidecar.scoring.hf.base import TransformersBackend, not_loaded
from sidecar.scoring.hf.chunking import first_chunks
from sidecar.scoring.hf.load import load_tokenizer, load_weights, tokenizer_limit
from sidecar.scoring.hf.quantize import quantize_for_cpu
from sidecar.scoring.local.backend import Encoded, Item, max_per_document
from sidecar.scoring.local.collate import collate


def model_limit(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module) -> int | None:
    """Longest input the model takes, from its tokenizer or else its position embeddings."""
    limit = tokenizer_limit(tokenizer)
    if limit is not None:
        return limit
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return positions if isinstance(positions, int) else None


def clip_query(tokenizer: PreTrainedTokenizerBase, query: str, max_tokens: int) -> str:
    """The query cut to ``max_tokens`` tokens, so a pair always leaves room for the document."""
    encoded = tokenizer(query, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if len(offsets) <= max_tokens:
        return query
    return query[: offsets[max_tokens - 1][1]]


@dataclass(frozen=True)
class _Loaded:
    tokenizer: PreTrainedTokenizerBase
    model: torch.nn.Module
    labels: int
    pad: int
    with_types: bool


class SeqClsBackend(TransformersBackend):
    kind = "cross-encoder"

    _state: _Loaded | None = None

    def load(self) -> None:
        name = self._config.name
        files = self._model_files()
        tokenizer = load_tokenizer(files, model=name)
        model = load_weights(
            AutoModelForSequenceClassification.from_pretrained,
            files,
            model=name,
            device=self._device,
            dtype=self._dtype,
        )
        model, quantization = quantize_for_cpu(model, self._config.cpu_quantization, self._device)
        labels = getattr(getattr(model, "config", None), "num_labels", None)
        if labels not in (1, 2):
            raise ModelLoadError(
                f"model {name!r} has {labels} output labels; a cross-encoder needs 1 "
                f"(relevance logit) or 2 (irrelevant/relevant)"
            )
        limit = model_limit(tokenizer, model)
        max_length = min(self._config.max_length, limit or self._config.max_length)
        pad = tokenizer.pad_token_id
        self._state = _Loaded(
            tokenizer=tokenizer,
            model=model,
            labels=int(labels),
            pad=pad if isinstance(pad, int) else 0,
            with_types="token_type_ids" in tokenizer.model_input_names,
        )
        attention = str(getattr(getattr(model, "config", None), "_attn_implementation", ""))
        self.info = replace(
            self.info,
            source=str(files),
            max_length=max_length,
            extra={"labels": str(labels), "attention": attention, "quantization": quantization},
        )

    def _loaded(self) -> _Loaded:
        if self._state is None:
            raise not_loaded(self._config.name)
        return self._state

    def encode(self, query: str, documents: Sequence[str], instruction: str) -> Encoded:
        state = self._loaded()
        max_length = self.info.max_length
        chunk = self._config.long_documents == "chunk"
        options: dict[str, Any] = {}
        if chunk:
            # The room left for the document bounds the overlap the tokenizer accepts.
            room = max_length // 2 - state.tokenizer.num_special_tokens_to_add(pair=True)
            options = {
                "return_overflowing_tokens": True,
                "stride": min(self._config.chunk_overlap_tokens, max(room // 2, 0)),
            }
        with self._tokenizer_lock:
            query = clip_query(state.tokenizer, query, max_length // 2)
            encoded = state.tokenizer(
                [query] * len(documents),
                list(documents),
                truncation="only_second",
                max_length=max_length,
                return_attention_mask=False,
                return_token_type_ids=state.with_types,
                **options,
            )
        ids: list[list[int]] = encoded["input_ids"]
        types: list[list[int]] | None = encoded["token_type_ids"] if state.with_types else None
        owners: list[int] = (
            list(encoded["overflow_to_sample_mapping"]) if chunk else list(range(len(ids)))
        )
        keep = first_chunks(owners, self._config.max_chunks_per_doc) if chunk else range(len(ids))
        items = [Item(ids[i], types[i] if types is not None else None) for i in keep]
        return Encoded(items, [owners[i] for i in keep], len(documents))

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        state = self._loaded()
        batch = collate(items, state.pad, left=False)
        device = self._device
        inputs = {
            "input_ids": batch.input_ids.to(device),
            "attention_mask": batch.attention_mask.to(device),
        }
        if batch.token_type_ids is not None:
            inputs["token_type_ids"] = batch.token_type_ids.to(device)
        logits = state.model(**inputs).logits.float()
        if state.labels == 1:
            return torch.sigmoid(logits[:, 0]).cpu()
        return torch.softmax(logits, dim=-1)[:, 1].cpu()

    def combine(self, encoded: Encoded, outputs: torch.Tensor) -> list[float]:
        return max_per_document(outputs, encoded.owners, encoded.n_docs)
