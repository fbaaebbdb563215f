"""Run ``rerank-sidecar serve`` as a child process (demo, benchmarks, tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from es_integration.local_es import free_port


class SidecarStartError(RuntimeError):
    pass


@dataclass
class SidecarProcess:
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)
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
        port: int | None = None,
        config: Path | None = None,
        model: str | None = None,
        env: dict[str, str] | None = None,
        wait_ready: bool = False,
        timeout: float = 60.0,
    ) -> SidecarProcess:
        port = port or free_port()
        cmd = [sys.executable, "-m", "sidecar", "serve", "--es-url", es_url, "--port", str(port)]
        cmd += ["--host", "127.0.0.1"]
        if config is not None:
            cmd += ["--config", str(config)]
        if model is not None:
            cmd += ["--model", model]
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
            )
        sc = cls(port=port, log_path=log_path, proc=proc)
        sc.wait("/_sidecar/health", timeout)
        sc.startup_s = time.monotonic() - t0
        if wait_ready:
            sc.wait("/_sidecar/ready", timeout)
        return sc

    def wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SidecarStartError(
                    f"sidecar exited with code {self.proc.returncode}; log:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + path, timeout=1.0) as resp:
                    if resp.status == 200:
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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
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
