"""Backend detection from the model's own files, and the Hugging Face cache path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import constants

from sidecar.config import ModelConfig
from sidecar.errors import ModelConfigError, ModelLoadError
from sidecar.scoring.detect import resolve_model

from .conftest import StartScorer


def test_local_directories(qwen_dir: Path, bert1_dir: Path) -> None:
    assert resolve_model(ModelConfig(name=str(qwen_dir))).backend == "qwen3"
    assert resolve_model(ModelConfig(name=str(bert1_dir))).backend == "seqcls"


def test_a_url_is_remote() -> None:
    resolved = resolve_model(ModelConfig(name="https://rerank.internal/v1/rerank"))
    assert resolved.backend == "remote" and resolved.directory is None


def test_configured_backend_skips_detection(bert1_dir: Path) -> None:
    resolved = resolve_model(ModelConfig(name=str(bert1_dir), backend="biencoder"))
    assert resolved.backend == "biencoder"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ModelConfig(name="/nonexistent/model/dir"), "does not exist"),
        (ModelConfig(name="some-org/not-cached-model"), "'some-org/not-cached-model'"),
    ],
)
def test_errors_name_the_model(config: ModelConfig, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        resolve_model(config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ModelConfig(name="http://h/v1/rerank", backend="qwen3"), "only the remote backend"),
        (ModelConfig(name="some-org/some-model", backend="remote"), "not an http"),
    ],
)
def test_configurations_that_cannot_work_are_config_errors(
    config: ModelConfig, message: str
) -> None:
    # Not a load failure to retry: the process stops with exit code 2.
    with pytest.raises(ModelConfigError, match=rf"^config error: model\.backend: .*{message}"):
        resolve_model(config)


def test_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ModelLoadError, match=r"set model\.backend"):
        resolve_model(ModelConfig(name=str(tmp_path)))


def _fake_hub_cache(root: Path, repo: str, files: Path) -> None:
    """The layout huggingface_hub leaves behind after a download (refs -> snapshot)."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    shutil.copytree(files, repo_dir / "snapshots" / commit)


async def test_an_hf_id_runs_from_the_cache_offline(
    qwen_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start_scorer: StartScorer,
) -> None:
    # The tiny model stands in for the 4B one: only the files decide what runs.
    _fake_hub_cache(tmp_path, "Qwen/Qwen3-Reranker-4B", qwen_dir)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    resolved = resolve_model(ModelConfig(name="Qwen/Qwen3-Reranker-4B"))
    assert resolved.backend == "qwen3" and resolved.directory is None
    scorer = await start_scorer("Qwen/Qwen3-Reranker-4B")
    assert scorer.info.kind == "causal-lm reranker"
    assert "snapshots" in scorer.info.source
    assert len((await scorer.score("q", ["d"])).scores) == 1
