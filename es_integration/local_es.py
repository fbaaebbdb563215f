"""A local Elasticsearch-compatible server for development and tests.

No real Elasticsearch can be installed on a bare developer machine without Docker, so this
module runs ``noida-db`` (from PyPI; it speaks the ES 8.15 REST API with real BM25 scores)
as a child process on a free loopback port, with its own data directory.

    with LocalES.start() as es:
        print(es.url)

``stop()`` kills the whole process group; ``restart()`` brings the same server back on the
same port and data directory (the tests use it to take ES away mid-flight).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any

READY_TIMEOUT_S = 30.0


def stop_group(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM to ``proc``'s process group (it was started in a session of its own), then
    SIGKILL if it has not exited within ``timeout``; waits for it either way."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


class LocalESError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def noida_binary() -> Path:
    try:
        path = Path(str(files("noida_db").joinpath("noida-db")))
    except ModuleNotFoundError as exc:
        raise LocalESError(
            "noida-db is not installed: pip install 'rerank-sidecar[localdev]'"
        ) from exc
    if not path.is_file():
        raise LocalESError(f"noida-db binary not found at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def wait_ready(
    url: str, timeout: float = READY_TIMEOUT_S, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``GET /`` until ES answers 200 (or the process dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LocalESError(f"the ES-compatible server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/", timeout=1.0) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise LocalESError(f"{url} was not ready after {timeout:.0f}s ({last})")


@dataclass
class LocalES:
    port: int
    data_dir: Path
    host: str = "127.0.0.1"
    log_path: Path | None = None
    owns_data_dir: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @classmethod
    def start(
        cls,
        port: int | None = None,
        data_dir: Path | None = None,
        *,
        timeout: float = READY_TIMEOUT_S,
    ) -> LocalES:
        owns = data_dir is None
        data_dir = Path(tempfile.mkdtemp(prefix="local-es-")) if data_dir is None else data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        es = cls(port=port or free_port(), data_dir=data_dir, owns_data_dir=owns)
        es.log_path = data_dir / "server.log"
        es.launch(timeout=timeout)
        return es

    def launch(self, *, timeout: float = READY_TIMEOUT_S) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise LocalESError("already running")
        assert self.log_path is not None
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [
                    str(noida_binary()),
                    "start",
                    "--only",
                    "elasticsearch",
                    "--host",
                    self.host,
                    "--elasticsearch-port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: stop() can take down anything the server spawns.
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            wait_ready(self.url, timeout, self.proc)
        except LocalESError:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        stop_group(proc, timeout)

    def restart(self, timeout: float = READY_TIMEOUT_S) -> None:
        self.stop()
        self.launch(timeout=timeout)

    def close(self) -> None:
        self.stop()
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalES:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
