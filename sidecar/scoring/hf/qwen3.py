"""Qwen3-Reranker (0.6B, 4B, 8B): a causal LM asked whether the document answers the query.

The score is P("yes") from a softmax over the "yes" and "no" logits at the last position of
the official prompt. The prompt must match the one the model was trained with, token for
token, so it is built here exactly as Qwen's reference code builds it; client text in it
(instruction, query, document) is tokenized as plain text (:mod:`.plaintext`).

Two things make it cheaper than the reference without changing a score:

* **Two-row head.** Only the ``no`` and ``yes`` rows of the output projection are applied,
  at the last position only: the same two logits as the full 151,669-row vocabulary gives
  (what a seq-cls conversion of the checkpoint computes), without converting anything.
* **Shared prefix** (``model.prefix_reuse``). System prompt, instruction and query come
  before the document and are the same for every document of a search. They are run once
  per search; their attention keys and values are then expanded across the batch, and a
  pass runs only each document and the prompt's tail.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from sidecar.errors import InputTooLong, ModelLoadError
from sidecar.scoring.base import ModelInfo
from sidecar.scoring.hf.base import HFBackend, Loaded
from sidecar.scoring.hf.chunking import windows
from sidecar.scoring.hf.device import attention_implementation
from sidecar.scoring.local.backend import Encoded, Item, SharedPrefix
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


def _parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Linear] | None:
    """The decoder stack and the output projection, where the model has the usual layout."""
    decoder = getattr(model, "model", None)
    head = getattr(model, "lm_head", None)
    if isinstance(decoder, torch.nn.Module) and isinstance(head, torch.nn.Linear):
        return decoder, head
    return None


def _cache_keyword(decoder: torch.nn.Module) -> str:
    """transformers 5 calls the KV cache argument ``cache``; 4.x called it
    ``past_key_values`` (5.x still takes it, with a deprecation warning)."""
    parameters = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


#: One prefix's attention keys and values: per layer, two [1, kv_heads, length, head_dim].
_KV = list[tuple[torch.Tensor, torch.Tensor]]


def _layers_of(cache: Any) -> _KV:
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    # transformers 4.x DynamicCache
    return [(cache.key_cache[i], cache.value_cache[i]) for i in range(len(cache.key_cache))]


def _read_only_cache(kv: _KV) -> Any:
    """A cache over ``kv`` that a forward pass reads but never grows: every pass over the
    same prefix starts from the same keys and values."""
    from transformers import DynamicCache

    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # transformers 4.x: a plain cache, grown and dropped after the pass
        return DynamicCache.from_legacy_cache(tuple(kv))  # type: ignore[attr-defined]

    class _ReadOnly(DynamicLayer):  # type: ignore[no-untyped-call]
        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            assert self.keys is not None and self.values is not None
            keys = torch.cat([self.keys, key_states], dim=-2)
            return keys, torch.cat([self.values, value_states], dim=-2)

    layers: list[Any] = []
    for keys, values in kv:
        layer = _ReadOnly()  # type: ignore[no-untyped-call]
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values = keys, values
        layers.append(layer)
    cache = DynamicCache()
    cache.layers = layers
    cache.layer_class_to_replicate = None
    return cache


@dataclass(frozen=True)
class _Loaded(Loaded):
    prefix: list[int]
    suffix: list[int]
    yes: int
    no: int
    #: None where the model is not laid out as decoder + lm_head (then the full head runs).
    parts: tuple[torch.nn.Module, torch.nn.Linear] | None
    cache_keyword: str


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
        parts = _parts(model)
        state = _Loaded(
            tokenizer=tokenizer,
            model=model,
            # The template's own control tokens: the one place they are read as such.
            prefix=tokenizer.encode(PREFIX, add_special_tokens=False),
            suffix=tokenizer.encode(SUFFIX, add_special_tokens=False),
            yes=yes,
            no=no,
            parts=parts,
            cache_keyword=_cache_keyword(parts[0]) if parts else "",
        )
        positions = _config_int(model, "max_position_embeddings")
        reuse = self._tuning.prefix_reuse and parts is not None
        info = replace(
            self.info,
            source=str(files),
            max_length=min(self._config.max_length, positions or self._config.max_length),
            extra={
                "attention": attention,
                "head": "yes/no rows" if parts else "full vocabulary",
                "prefix_reuse": "on" if reuse else "off",
            },
        )
        return state, info

    @property
    def _reuse(self) -> bool:
        return self._tuning.prefix_reuse and self._loaded().parts is not None

    def encode(self, query: str, documents: Sequence[str], instruction: str) -> Encoded:
        state = self._loaded()
        with self._tokenizer_lock:
            head: list[int] = state.plain.encode(
                _head(instruction, query), add_special_tokens=False
            )
            docs: list[list[int]] = state.plain(
                [" " + doc for doc in documents],
                add_special_tokens=False,
                return_attention_mask=False,
            )["input_ids"]
        head = state.control.scrub(head)
        start = state.prefix + head
        budget = self.info.max_length - len(start) - len(state.suffix)
        if budget < 1:
            # Cutting the query or instruction would change the question; refuse instead.
            raise InputTooLong(
                f"the query and instruction are {len(start) + len(state.suffix)} tokens with "
                f"the prompt, more than model.max_length ({self.info.max_length})"
            )
        shared = SharedPrefix(start) if self._reuse else None
        items: list[Item] = []
        owners: list[int] = []
        for index, doc in enumerate(docs):
            for piece in self._fit(state.control.scrub(doc), budget):
                if shared is not None:
                    items.append(Item(piece + state.suffix, prefix=shared))
                else:
                    items.append(Item(start + piece + state.suffix))
                owners.append(index)
        return Encoded(items, owners, len(documents))

    def _fit(self, doc: list[int], budget: int) -> list[list[int]]:
        if self._config.long_documents == "chunk":
            return windows(
                doc, budget, self._tuning.chunk_overlap_tokens, self._tuning.max_chunks_per_doc
            )
        return [doc[:budget]]

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        state = self._loaded()
        if state.parts is None:
            return self._forward_full_head(items)
        if items[0].prefix is not None:
            hidden = self._last_hidden_after_prefix(items)
        else:
            inputs = self._inputs(items, left=True)
            # With left padding the real tokens must still start at position 0, or a document
            # would score differently alone and inside a batch.
            positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp_(min=0)
            out = state.parts[0](**inputs, position_ids=positions, use_cache=False)
            hidden = out.last_hidden_state[:, -1]
        return self._p_yes(self._yes_no_logits(hidden))

    def _yes_no_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[rows, 2]: the ``no`` and ``yes`` logits from the last position's hidden state."""
        state = self._loaded()
        assert state.parts is not None
        head = state.parts[1]
        rows = torch.tensor([state.no, state.yes], device=head.weight.device)
        bias = None if head.bias is None else head.bias.index_select(0, rows)
        return F.linear(hidden, head.weight.index_select(0, rows), bias)

    @staticmethod
    def _p_yes(no_yes: torch.Tensor) -> torch.Tensor:
        return no_yes.float().log_softmax(dim=-1)[:, 1].exp().cpu()

    def _forward_full_head(self, items: Sequence[Item]) -> torch.Tensor:
        """The reference path: every vocabulary logit at the last position (for models not
        laid out as decoder + lm_head)."""
        state = self._loaded()
        if items[0].prefix is not None:
            items = [Item(item.prefix.ids + item.ids) for item in items if item.prefix]
        inputs = self._inputs(items, left=True)
        positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp_(min=0)
        out = state.model(**inputs, position_ids=positions, use_cache=False, logits_to_keep=1)
        last = out.logits[:, -1, :]
        return self._p_yes(torch.stack((last[:, state.no], last[:, state.yes]), dim=1))

    def _prefix_kv(self, prefix: SharedPrefix) -> _KV:
        """The prefix's keys and values, computed on first use and kept with the request."""
        if prefix.state is None:
            state = self._loaded()
            assert state.parts is not None
            ids = torch.tensor([prefix.ids], device=self._device)
            out = state.parts[0](input_ids=ids, use_cache=True)
            prefix.state = _layers_of(getattr(out, state.cache_keyword))
        kv: _KV = prefix.state  # type: ignore[assignment]
        return kv

    def _last_hidden_after_prefix(self, items: Sequence[Item]) -> torch.Tensor:
        """Run each item's own tokens after its shared prefix; the last position's hidden
        state per item.

        Row r's input is its prefix (left-padded to the longest prefix of the pass) then its
        tokens (left-padded to the longest item): padding in the middle is masked, and the
        positions count real tokens only, so a row sees exactly what the plain prompt sees.
        """
        state = self._loaded()
        assert state.parts is not None
        prefixes: dict[int, SharedPrefix] = {}
        for item in items:
            assert item.prefix is not None, "items of one pass either all share or none does"
            prefixes.setdefault(id(item.prefix), item.prefix)
        order = list(prefixes)
        kvs = [self._prefix_kv(prefixes[key]) for key in order]
        lengths = [len(prefixes[key].ids) for key in order]
        rows = len(items)
        row_prefix = torch.tensor([order.index(id(item.prefix)) for item in items])
        longest = max(lengths)
        if len(kvs) == 1:
            kv = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in kvs[0]]
            prefix_mask = torch.ones((rows, longest), dtype=torch.long)
        else:
            kv = []
            for layer in range(len(kvs[0])):
                stacked = []
                for which in (0, 1):
                    parts = [
                        F.pad(one[layer][which], (0, 0, longest - length, 0))
                        for one, length in zip(kvs, lengths, strict=True)
                    ]
                    stacked.append(torch.cat(parts).index_select(0, row_prefix.to(self._device)))
                kv.append((stacked[0], stacked[1]))
            starts = longest - torch.tensor(lengths).index_select(0, row_prefix)
            prefix_mask = (torch.arange(longest).unsqueeze(0) >= starts.unsqueeze(1)).long()
        batch = collate(items, state.pad, left=True)
        own_mask = batch.attention_mask
        offsets = torch.tensor(lengths).index_select(0, row_prefix).unsqueeze(1)
        positions = offsets + (own_mask.cumsum(-1) - 1).clamp_(min=0)
        mask = torch.cat([prefix_mask, own_mask], dim=1)
        out = state.parts[0](
            input_ids=batch.input_ids.to(self._device),
            attention_mask=mask.to(self._device),
            position_ids=positions.to(self._device),
            use_cache=True,
            **{state.cache_keyword: _read_only_cache(kv)},
        )
        hidden: torch.Tensor = out.last_hidden_state[:, -1]
        return hidden
