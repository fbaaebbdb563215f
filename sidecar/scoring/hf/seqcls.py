"""Cross-encoders with a classification head (bge-reranker-v2-m3, ms-marco MiniLM, ...).

The pair is tokenized as (query, document) and only the document is truncated. Both are
client text: ``[SEP]`` or ``</s>`` in them is text, and only the tokenizer's own template
puts the real separators in (:mod:`.plaintext`). One logit is
a relevance logit (score = sigmoid); two logits are (irrelevant, relevant) classes (score =
softmax of the second).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase

from sidecar.errors import ModelLoadError
from sidecar.scoring.base import ModelInfo
from sidecar.scoring.hf.base import HFBackend, Loaded
from sidecar.scoring.hf.chunking import first_chunks
from sidecar.scoring.hf.load import tokenizer_limit
from sidecar.scoring.local.backend import Encoded, Item


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
class _Loaded(Loaded):
    labels: int


class SeqClsBackend(HFBackend[_Loaded]):
    backend = "seqcls"

    def _load(self, files: Path) -> tuple[_Loaded, ModelInfo]:
        name = self._config.name
        tokenizer = self._tokenizer(files)
        model = self._weights(AutoModelForSequenceClassification.from_pretrained, files)
        model, quantization = self._quantized(model)
        labels = getattr(getattr(model, "config", None), "num_labels", None)
        if labels not in (1, 2):
            raise ModelLoadError(
                f"model {name!r} has {labels} output labels; a cross-encoder needs 1 "
                f"(relevance logit) or 2 (irrelevant/relevant)"
            )
        limit = model_limit(tokenizer, model)
        attention = str(getattr(getattr(model, "config", None), "_attn_implementation", ""))
        info = replace(
            self.info,
            source=str(files),
            max_length=min(self._config.max_length, limit or self._config.max_length),
            extra={"labels": str(labels), "attention": attention, "quantization": quantization},
        )
        return _Loaded(tokenizer=tokenizer, model=model, labels=int(labels)), info

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
                "stride": min(self._tuning.chunk_overlap_tokens, max(room // 2, 0)),
            }
        with self._tokenizer_lock:
            query = clip_query(state.plain, query, max_length // 2)
            encoded = state.plain(
                [query] * len(documents),
                list(documents),
                truncation="only_second",
                max_length=max_length,
                return_attention_mask=False,
                return_token_type_ids=state.with_types,
                return_special_tokens_mask=True,
                **options,
            )
        masks: list[list[int]] = encoded["special_tokens_mask"]
        ids = [
            state.control.scrub(row, mask)
            for row, mask in zip(encoded["input_ids"], masks, strict=True)
        ]
        types: list[list[int]] | None = encoded["token_type_ids"] if state.with_types else None
        owners: list[int] = (
            list(encoded["overflow_to_sample_mapping"]) if chunk else list(range(len(ids)))
        )
        keep = first_chunks(owners, self._tuning.max_chunks_per_doc) if chunk else range(len(ids))
        items = [Item(ids[i], types[i] if types is not None else None) for i in keep]
        return Encoded(items, [owners[i] for i in keep], len(documents))

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        state = self._loaded()
        logits = state.model(**self._inputs(items, left=False)).logits.float()
        if state.labels == 1:
            return torch.sigmoid(logits[:, 0]).cpu()
        return torch.softmax(logits, dim=-1)[:, 1].cpu()
