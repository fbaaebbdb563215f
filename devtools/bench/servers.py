"""The processes a benchmark scenario runs: fake servers (``devtools.fakes``) and sidecars.

Each is a process of its own, so none shares an event loop or a core with the load
generator, and each is stopped when the scenario's exit stack closes.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from es_integration.local_es import free_port, wait_ready
from es_integration.sidecar_proc import SidecarProcess
from sidecar.config import merge

BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class Bench:
    quick: bool
    work: Path
    stack: contextlib.ExitStack
    #: Also measure scenario 1 against a real ES-compatible server (this one, or a local one
    #: the suite starts when this is "local").
    real_es: str | None = None
    #: Another checkout of this project (an earlier commit): scenarios that compare before
    #: and after run its sidecar beside this tree's, interleaved, in the same run.
    baseline: Path | None = None
    #: The source tree this run's sidecars come from (None: this one).
    tree: Path | None = None

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def start_fake(self, name: str, *args: str) -> tuple[str, int]:
        """``python -m devtools.fakes ARGS`` on a free port; (url, pid)."""
        port = free_port()
        cmd = [sys.executable, "-m", "devtools.fakes", *args, "--port", str(port)]
        with (self.work / f"{name}-{port}.log").open("wb") as log:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

        self.stack.callback(stop)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 30, proc)
        return url, proc.pid

    def sidecar(
        self,
        name: str,
        es_url: str,
        model: str,
        config: dict[str, Any],
        timeout: float = 300,
        tree: Path | None = None,
    ) -> SidecarProcess:
        sc = SidecarProcess.start(
            es_url,
            log_path=self.work / f"sidecar-{name}.log",
            model=model,
            config=merge({"server": {"access_log": False}}, config),
            wait_ready=True,
            timeout=timeout,
            tree=tree or self.tree,
        )
        self.stack.callback(sc.stop)
        return sc
