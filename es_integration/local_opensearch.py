"""A local OpenSearch-compatible server for development and tests.

``osmem-server`` (from PyPI; an in-memory server that speaks the OpenSearch 3 REST API, with
OpenSearch's own rules: 406 for ``text/plain``, ``max_result_window``, duplicate-key
refusals, ``?pretty``) runs as a child process on a free loopback port, exactly like
:class:`es_integration.local_es.LocalES` runs noida-db:

    with LocalOpenSearch.start() as os_:
        print(os_.url)

Its data lives in memory, so ``restart()`` brings back an empty server on the same port.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from es_integration.local_es import (
    READY_TIMEOUT_S,
    LocalESError,
    free_port,
    stop_group,
    wait_ready,
)


def osmem_binary() -> Path:
    try:
        from osmem_server import resolve_binary
    except ModuleNotFoundError as exc:
        raise LocalESError(
            "osmem-server is not installed: pip install 'rerank-sidecar[localdev]'"
        ) from exc
    path = Path(resolve_binary())
    if not path.is_file():
        raise LocalESError(f"osmem-server binary not found at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


@dataclass
class LocalOpenSearch:
    port: int
    host: str = "127.0.0.1"
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @classmethod
    def start(
        cls,
        port: int | None = None,
        *,
        log_path: Path | None = None,
        timeout: float = READY_TIMEOUT_S,
    ) -> LocalOpenSearch:
        server = cls(port=port or free_port(), log_path=log_path)
        server.launch(timeout=timeout)
        return server

    def launch(self, *, timeout: float = READY_TIMEOUT_S) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise LocalESError("already running")
        stderr = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [
                    str(osmem_binary()),
                    "--addr",
                    f"{self.host}:{self.port}",
                    "--no-ja",
                    "--no-stdin-watch",
                    "--parent-pid",
                    str(os.getpid()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                # Own process group: stop() can take down anything the server spawns.
                start_new_session=True,
            )
        finally:
            if self.log_path:
                stderr.close()  # type: ignore[union-attr]
        try:
            self._await_ready_line(timeout)
            wait_ready(self.url, timeout, self.proc)
        except LocalESError:
            self.stop()
            raise

    def _await_ready_line(self, timeout: float) -> None:
        """The server prints one JSON line with its URL once it listens."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        out = self.proc.stdout
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([out], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                break
            chunk = os.read(out.fileno(), 4096)
            if not chunk:
                raise LocalESError(f"osmem-server exited with code {self.proc.wait()}")
            buf += chunk
            for line in buf.splitlines():
                with contextlib.suppress(ValueError):
                    if "url" in json.loads(line):
                        return
        raise LocalESError(f"osmem-server did not start within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            stop_group(proc, timeout)
        if proc.stdout is not None:
            proc.stdout.close()

    def restart(self, timeout: float = READY_TIMEOUT_S) -> None:
        self.stop()
        self.launch(timeout=timeout)

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> LocalOpenSearch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
