"""Bi-encoders (sentence-transformers embedding models such as all-MiniLM-L6-v2).

Not a cross-encoder: query and documents are embedded separately and the score is the cosine
of the normalized pooled embeddings. That ranks worse than a cross-encoder, which is why the
kind is reported plainly. Read with plain transformers (AutoModel + the pooling config) so
the sentence-transformers library is not needed at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModel

from sidecar.errors import ModelFailure, ModelLoadError
from sidecar.scoring import bundled
from sidecar.scoring.base import ModelInfo
from sidecar.scoring.hf.base import HFBackend, Loaded
from sidecar.scoring.hf.chunking import first_chunks
from sidecar.scoring.hf.load import read_json, tokenizer_limit
from sidecar.scoring.hf.pooling import PoolingMode, pool, pooling_mode
from sidecar.scoring.local.backend import QUERY_OWNER, Encoded, Item, max_per_document


@dataclass(frozen=True)
class Layout:
    """Where a sentence-transformers model keeps its parts."""

    transformer: Path
    pooling: PoolingMode
    max_seq_length: int | None


def read_layout(root: Path, *, model: str) -> Layout:
    modules: Any = []
    if (root / "modules.json").is_file():
        modules = read_json(root / "modules.json", model=model)
    if not isinstance(modules, list):
        raise ModelLoadError(f"model {model!r}: modules.json is not a list")
    paths = {
        str(entry.get("type", "")).rsplit(".", 1)[-1]: str(entry.get("path", ""))
        for entry in modules
        if isinstance(entry, dict)
    }
    transformer = root / paths.get("Transformer", "")
    mode: PoolingMode = "mean"
    if "Pooling" in paths and (root / paths["Pooling"] / "config.json").is_file():
        pooling = read_json(root / paths["Pooling"] / "config.json", model=model)
        mode = pooling_mode(pooling, model=model)
    max_seq_length = None
    if (transformer / "sentence_bert_config.json").is_file():
        st_config = read_json(transformer / "sentence_bert_config.json", model=model)
        found = st_config.get("max_seq_length") if isinstance(st_config, dict) else None
        max_seq_length = found if isinstance(found, int) and found > 0 else None
    return Layout(transformer, mode, max_seq_length)


@dataclass(frozen=True)
class _Loaded(Loaded):
    pooling: PoolingMode


class BiEncoderBackend(HFBackend[_Loaded]):
    backend = "biencoder"

    def _load(self, files: Path) -> tuple[_Loaded, ModelInfo]:
        layout = read_layout(files, model=self._config.name)
        tokenizer = self._tokenizer(layout.transformer)
        model = self._weights(AutoModel.from_pretrained, layout.transformer)
        model, quantization = self._quantized(model)
        limits = [self._config.max_length, layout.max_seq_length, tokenizer_limit(tokenizer)]
        # Unset: the bundled model declares its own; an explicit [] means every language.
        languages = bundled.declared_languages(self._config)
        extra: dict[str, str] = {"pooling": layout.pooling, "quantization": quantization}
        if self._resolved.bundled:
            extra["bundled"] = bundled.DIST
        info = replace(
            self.info,
            source=str(files),
            max_length=min(limit for limit in limits if limit is not None),
            languages=languages,
            extra=extra,
        )
        return _Loaded(tokenizer=tokenizer, model=model, pooling=layout.pooling), info

    def encode(self, query: str, documents: Sequence[str], instruction: str) -> Encoded:
        state = self._loaded()
        chunk = self._config.long_documents == "chunk"
        common: dict[str, Any] = {
            "truncation": True,
            "max_length": self.info.max_length,
            "return_attention_mask": False,
            "return_token_type_ids": state.with_types,
        }
        options: dict[str, Any] = {}
        if chunk:
            room = self.info.max_length - state.plain.num_special_tokens_to_add(pair=False)
            options = {
                "return_overflowing_tokens": True,
                "stride": min(self._tuning.chunk_overlap_tokens, max(room // 2, 0)),
            }
        common["return_special_tokens_mask"] = True
        with self._tokenizer_lock:
            # Client text, so the plain-text copy (a "[SEP]" in a document stays text).
            question = state.plain([query], **common)
            docs = state.plain(list(documents), **common, **options)
        masks = question["special_tokens_mask"] + docs["special_tokens_mask"]
        ids: list[list[int]] = [
            state.control.scrub(row, mask)
            for row, mask in zip(question["input_ids"] + docs["input_ids"], masks, strict=True)
        ]
        types: list[list[int]] | None = None
        if state.with_types:
            types = question["token_type_ids"] + docs["token_type_ids"]
        doc_owners = (
            list(docs["overflow_to_sample_mapping"]) if chunk else list(range(len(documents)))
        )
        owners = [QUERY_OWNER, *doc_owners]
        keep = [0] + [1 + i for i in first_chunks(doc_owners, self._tuning.max_chunks_per_doc)]
        items = [Item(ids[i], types[i] if types is not None else None) for i in keep]
        return Encoded(items, [owners[i] for i in keep], len(documents))

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        state = self._loaded()
        inputs = self._inputs(items, left=False)
        hidden = state.model(**inputs).last_hidden_state
        pooled = pool(hidden, inputs["attention_mask"], state.pooling)
        return F.normalize(pooled.float(), dim=-1).cpu()

    def combine(self, encoded: Encoded, outputs: torch.Tensor) -> list[float]:
        if encoded.owners[0] != QUERY_OWNER:
            raise ModelFailure("bi-encoder request without its query embedding")
        similarities = outputs[1:] @ outputs[0]
        return max_per_document(similarities, encoded.owners[1:], encoded.n_docs)
