"""Config: defaults equal the committed config.yaml, overrides apply in order, and every
bad value fails fast with one line that names the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import MOVED, SELF_SIZED, SidecarConfig, build_config, load_config, read_yaml
from sidecar.errors import ConfigError


def test_committed_config_is_the_production_default(repo_root: Path) -> None:
    committed = load_config(repo_root / "config.yaml", environ={})
    assert committed == SidecarConfig()
    assert committed.es.url == "http://localhost:9200"
    assert committed.model.name == "Qwen/Qwen3-Reranker-0.6B"
    # Every key in the file is a real key (extra keys are rejected), and the file spells
    # out every section.
    assert set(read_yaml(repo_root / "config.yaml")) == set(SidecarConfig.model_fields)


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("es:\n  url: http://file:9200\nserver:\n  port: 1111\n")
    env = {
        "RERANK_SIDECAR__SERVER__PORT": "2222",
        "RERANK_SIDECAR__ES__TIMEOUTS__READ_S": "7",
        "RERANK_SIDECAR__TUNING__WORKER__MAX_BATCH_PAIRS": "32",
    }
    cfg = load_config(path, environ=env, overrides={"es": {"url": "http://flag:9200"}})
    assert cfg.es.url == "http://flag:9200"
    assert cfg.server.port == 2222
    assert cfg.es.timeouts.read_s == 7.0
    assert cfg.tuning.worker.max_batch_pairs == 32


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("es:\n  urll: http://x\n", "config error: es.urll: unknown key"),
        ("server:\n  port: eighty\n", "config error: server.port: "),
        ("es:\n  timeouts:\n    connect_s: -1\n", "config error: es.timeouts.connect_s: "),
        ("model:\n  name: 'bad path with spaces'\n", "config error: model.name: "),
        ("es:\n  url: ftp://x\n", "config error: es.url: "),
        ("model:\n  device: gpu9\n", "config error: model.device: "),
        ("- a list\n", "the top level must be a mapping"),
        ("es: [\n", "is not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_bad_value_is_quoted(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  port: eighty\n")
    with pytest.raises(ConfigError, match="'eighty'"):
        load_config(path, environ={})


def test_bad_env_value_names_the_key() -> None:
    with pytest.raises(
        ConfigError, match=r"^config error: tuning\.worker\.max_batch_pairs: .*'lots'"
    ):
        load_config(environ={"RERANK_SIDECAR__TUNING__WORKER__MAX_BATCH_PAIRS": "lots"})


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "rerank:\n  load:\n    min_window: 5\n",
            "config error: rerank.load.min_window: moved to rerank.min_window",
        ),
        (
            "server:\n  port: 9280\n  max_body_bytes: 1024\n",
            "config error: server.max_body_bytes: moved to tuning.http.max_body_bytes",
        ),
        (
            "model:\n  remote:\n    read_timeout_s: 3\n",
            "config error: model.remote.read_timeout_s: moved to tuning.remote.read_timeout_s",
        ),
        (
            "worker:\n  warmup: false\n",
            "config error: worker.warmup: moved to tuning.model.warmup",
        ),
        (
            "rerank:\n  load:\n    chunk_hits: 5\n",
            f"config error: rerank.load.chunk_hits: {SELF_SIZED}",
        ),
        (
            "rerank:\n  breaker:\n    hang_factor: 4\n",
            f"config error: rerank.breaker.hang_factor: {SELF_SIZED}",
        ),
        ("worker:\n  batch_wait_ms: 2\n", f"config error: worker.batch_wait_ms: {SELF_SIZED}"),
        # A key the old sections never had: the section itself is named.
        ("worker:\n  threads: 2\n", "config error: worker: removed; its settings moved to tuning"),
        (
            "rerank:\n  load: {}\n",
            "config error: rerank.load: removed; its settings moved to tuning",
        ),
    ],
)
def test_an_old_key_names_its_new_place(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == expected


def test_an_old_key_from_the_environment_names_its_new_place() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"RERANK_SIDECAR__WORKER__MAX_BATCH_PAIRS": "64"})
    assert str(info.value) == (
        "config error: worker.max_batch_pairs: moved to tuning.worker.max_batch_pairs"
    )


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_key_is_refused_and_its_new_place_exists(old: str) -> None:
    tree: dict[str, Any] = {}
    *sections, leaf = old.split(".")
    node = tree
    for section in sections:
        node = node.setdefault(section, {})
    node[leaf] = 1
    with pytest.raises(ConfigError) as info:
        build_config(tree)
    message = str(info.value)
    assert message.startswith(f"config error: {old}: ") and "\n" not in message
    new = MOVED[old]
    if new.startswith("removed:"):
        # Gone (the sidecar sizes it itself, or it has no meaning any more): said so.
        assert message.endswith(new)
        return
    assert message.endswith(f"moved to {new}")
    # The new place is a real key: the same value, set there, is taken (or refused on its
    # own terms, never as an unknown key).
    value: Any = SidecarConfig()
    for part in new.split("."):
        value = getattr(value, part)
    new_tree: dict[str, Any] = {}
    *sections, leaf = new.split(".")
    node = new_tree
    for section in sections:
        node = node.setdefault(section, {})
    node[leaf] = value
    assert build_config(new_tree) == SidecarConfig()


def test_the_cli_refuses_an_old_key_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("es:\n  url: http://localhost:9200\nrerank:\n  load:\n    min_window: 5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "config error: rerank.load.min_window: moved to rerank.min_window"


def test_cli_fails_fast_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("es:\n  url: http://localhost:9200\n  pool: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "config error: es.pool: unknown key"


def test_cli_flag_is_validated_too() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--es-url", "not-a-url"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("config error: es.url: ")
