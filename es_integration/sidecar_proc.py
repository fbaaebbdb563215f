"""Run ``rerank-sidecar serve`` as a child process (demo, benchmarks, tests).

The child is configured from a nested dict shaped like the sidecar's YAML: it is merged
over an optional config file, validated here (a typo fails in the caller, naming the key,
instead of in a child's log), and written beside the log as the child's ``--config``. Callers
say ``{"rerank": {"budget_ms": 300}}`` and never spell environment variable names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from es_integration.local_es import free_port, stop_group
from sidecar.config import build_config, merge, read_yaml


class SidecarStartError(RuntimeError):
    pass


def write_config(
    path: Path,
    es_url: str,
    port: int,
    *,
    model: str | None = None,
    config: Mapping[str, Any] | None = None,
    config_file: Path | None = None,
) -> dict[str, Any]:
    """Merge, validate and write the child's config file; returns what was written."""
    tree: dict[str, Any] = read_yaml(config_file) if config_file is not None else {}
    tree = merge(tree, config or {})
    placed: dict[str, Any] = {"es": {"url": es_url}, "server": {"host": "127.0.0.1", "port": port}}
    if model is not None:
        placed["model"] = {"name": model}
    tree = merge(tree, placed)
    build_config(tree)
    # JSON first: tuples and paths become what YAML can write and the sidecar reads back.
    plain: dict[str, Any] = json.loads(json.dumps(tree, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(plain, sort_keys=False), encoding="utf-8")
    return plain


@dataclass
class SidecarProcess:
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)
    config_path: Path | None = None
    #: Seconds from spawn until /_sidecar/health answered.
    startup_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        es_url: str,
        *,
        log_path: Path,
        model: str | None = None,
        config: Mapping[str, Any] | None = None,
        config_file: Path | None = None,
        port: int | None = None,
        wait_ready: bool = False,
        timeout: float = 60.0,
        tree: Path | None = None,
    ) -> SidecarProcess:
        """Start a sidecar; with ``tree``, that source tree's (another checkout of this
        project: a benchmark's baseline), run from it."""
        port = port or free_port()
        config_path = log_path.with_name(log_path.stem + ".config.yaml")
        write_config(config_path, es_url, port, model=model, config=config, config_file=config_file)
        cmd = [sys.executable, "-m", "sidecar", "serve", "--config", str(config_path)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
        t0 = time.monotonic()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tree,
                start_new_session=True,
            )
        sc = cls(port=port, log_path=log_path, proc=proc, config_path=config_path)
        sc.wait("/_sidecar/health", timeout)
        sc.startup_s = time.monotonic() - t0
        if wait_ready:
            # Ready and reranking: /_sidecar/ready is 200 with ES order served too (a model
            # that failed to load), and what starts a sidecar here wants its model warm.
            sc.wait("/_sidecar/ready", timeout, reranking=True)
        return sc

    def wait(self, path: str, timeout: float, *, reranking: bool = False) -> None:
        """Until ``path`` answers 200 (and, with ``reranking``, its JSON says so)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SidecarStartError(
                    f"sidecar exited with code {self.proc.returncode}; log:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + path, timeout=1.0) as resp:
                    if resp.status == 200 and (
                        not reranking or json.loads(resp.read()).get("reranking") is True
                    ):
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise SidecarStartError(
            f"sidecar not answering {path} after {timeout}s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            stop_group(self.proc, timeout)
        return self.proc.returncode

    def __enter__(self) -> SidecarProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
