"""model.cpu_quantization: dynamic int8 on the CPU for cross-encoders and bi-encoders."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch
from transformers import BertForSequenceClassification

from devtools.tiny_models import MINILM, BertDims, cross_encoder, save_cross_encoder
from sidecar.config import ModelConfig, build_config
from sidecar.errors import ConfigError
from sidecar.scoring.factory import create_scorer
from sidecar.scoring.hf.quantize import choose_engine, quantize_for_cpu

SMALL = BertDims(hidden=64, layers=2, heads=2, ffn=128)


def _tiny_bert() -> BertForSequenceClassification:
    return cross_encoder(BertDims(64, 2, 2, 128, max_positions=128), vocab_size=1000, seed=3)


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"), SMALL, seed=5)


def test_the_option_defaults_to_none_and_is_validated() -> None:
    assert ModelConfig().cpu_quantization == "none"
    assert build_config({"model": {"cpu_quantization": "dynamic_int8"}}).model.cpu_quantization
    with pytest.raises(ConfigError, match=r"model\.cpu_quantization"):
        build_config({"model": {"cpu_quantization": "int4"}})


def test_dynamic_int8_swaps_every_linear_and_keeps_the_outputs_close() -> None:
    model = _tiny_bert()
    ids = torch.randint(5, 1000, (4, 24))
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        before = model(input_ids=ids, attention_mask=mask).logits
    quantized, how = quantize_for_cpu(model, "dynamic_int8", torch.device("cpu"))
    assert how.startswith("dynamic_int8 (")
    assert not any(type(m) is torch.nn.Linear for m in quantized.modules())
    assert any("quantized" in type(m).__module__ for m in quantized.modules())
    with torch.inference_mode():
        after = quantized(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(before, after, atol=0.05)
    # The original stays fp32 (the quantized model is a copy).
    assert any(type(m) is torch.nn.Linear for m in model.modules())


def test_none_and_other_devices_leave_the_model_alone() -> None:
    model = _tiny_bert()
    assert quantize_for_cpu(model, "none", torch.device("cpu")) == (model, "none")
    same, how = quantize_for_cpu(model, "dynamic_int8", torch.device("cuda"))
    assert same is model
    assert "CPU-only" in how


def test_the_engine_is_one_this_torch_offers() -> None:
    engine = choose_engine(_tiny_bert())
    assert engine in torch.backends.quantized.supported_engines
    # Choosing leaves the process-wide engine as it was.
    before = torch.backends.quantized.engine
    quantize_for_cpu(_tiny_bert(), "dynamic_int8", torch.device("cpu"), engine=engine)
    assert torch.backends.quantized.engine == before


async def test_a_quantized_cross_encoder_scores_like_the_fp32_one(cross_encoder_dir: Path) -> None:
    query = "what is the capital of france"
    docs = ["Paris is the capital of France.", "Bananas are yellow.", "Berlin is in Germany."]
    scores: dict[str, list[float]] = {}
    for mode in ("none", "dynamic_int8"):
        # Random weights: the start-up self-test would refuse the model.
        config = ModelConfig(name=str(cross_encoder_dir), cpu_quantization=mode, self_test=False)
        scorer = create_scorer(config)
        await scorer.start()
        try:
            assert scorer.info.extra["quantization"].startswith(mode)
            scores[mode] = (await scorer.score(query, docs)).scores
        finally:
            await scorer.close()
    assert scores["dynamic_int8"] == pytest.approx(scores["none"], abs=0.02)


async def test_the_bundled_bi_encoder_quantized_still_ranks_the_answer_first() -> None:
    config = ModelConfig(name=MINILM, cpu_quantization="dynamic_int8")
    scorer = create_scorer(config)
    await scorer.start()
    try:
        assert scorer.info.kind == "bi-encoder"
        assert scorer.info.extra["quantization"].startswith("dynamic_int8")
        result = await scorer.score(
            "how do I renew a library book",
            ["The weather is sunny today.", "You can renew borrowed books online or at the desk."],
        )
    finally:
        await scorer.close()
    assert result.scores[1] > result.scores[0]
