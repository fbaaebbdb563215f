"""Building and running the images with podman, for tests/docker/test_image.py and
tests/docker/test_compose_podman.py.

Podman's settings come from docker/podman/containers.conf (CONTAINERS_CONF), as for
`make image`. Containers run on the host's network: the sidecar reaches the test suite's
local ES on 127.0.0.1, and the tests reach the sidecar there, so no traffic leaves loopback.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.docker.helpers import COMPOSE, DOCKER, ROOT, load_yaml

CONTAINERS_CONF = DOCKER / "podman" / "containers.conf"
PLAIN = "localhost/rerank-sidecar:cpu"
BUNDLED = "localhost/rerank-sidecar:cpu-bundled"
BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: Poll interval while waiting for a condition a process reports only over HTTP.
POLL_S = 0.25


def podman_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), **extra}


def podman(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"podman {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def unavailable_reason() -> str | None:
    """Why podman cannot run containers here, in one line (None: it can)."""
    if shutil.which("podman") is None:
        return "podman is not installed (make test installs it: apt-get install podman)"
    proc = subprocess.run(
        ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or "no output").splitlines()
        return f"podman cannot run here: {lines[-1]}"
    return None


def build_images() -> None:
    """`make image`: the base (kept by podman between runs), then both images, each step
    from podman's layer cache when its inputs are unchanged. One build of this tree at a
    time: the test files that need the images may run at once, on pytest-xdist workers,
    and two builds would tag the same names."""
    tree = hashlib.sha256(str(ROOT).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"rerank-sidecar-image-{tree}.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file is closed
        proc = subprocess.run(
            ["make", "-s", "image"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=podman_env(),
            timeout=1800,
            check=False,
        )
    if proc.returncode != 0:
        pytest.fail(f"make image failed:\n{(proc.stdout + proc.stderr)[-5000:]}")


def start_period_s(image: str) -> float:
    """The HEALTHCHECK's start period: how long the image itself gives a start."""
    check = json.loads(
        podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image).stdout
    )
    return int(check["StartPeriod"]) / 1e9


def compose_grace_s() -> float:
    """The stop grace period the compose file gives the sidecar (docker stop's -t)."""
    text = load_yaml(COMPOSE)["services"]["sidecar"]["stop_grace_period"]
    assert text.endswith("s"), text
    return float(text[:-1])


def http(url: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def json_records(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"a line of the container's log is not JSON: {line!r}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


@dataclass
class Container:
    name: str
    port: int
    image: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self, field: str) -> str:
        return podman("inspect", "--format", f"{{{{.State.{field}}}}}", self.name).stdout.strip()

    def logs(self) -> str:
        proc = podman("logs", self.name)
        return proc.stdout + proc.stderr

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *cmd, check=False)

    def follow(self) -> Iterator[dict[str, Any]]:
        """The container's log records as they are written (`podman logs -f`)."""
        with subprocess.Popen(
            ["podman", "logs", "-f", self.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=podman_env(),
        ) as proc:
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    yield json.loads(line)
            finally:
                proc.kill()

    def wait_ready(self) -> dict[str, Any]:
        """Until /_sidecar/ready answers 200 with reranking on, within the image's own
        HEALTHCHECK start period; fails at once if the container stops or its model fails
        to load (the bundled model loads the first time, or never)."""
        deadline = time.monotonic() + start_period_s(self.image)
        last: Any = None
        while time.monotonic() < deadline:
            try:
                status, _, body = http(f"{self.url}/_sidecar/ready")
            except OSError as exc:
                last = exc
                if self.state("Running") != "true":
                    pytest.fail(f"{self.name} stopped:\n{self.logs()[-4000:]}")
            else:
                last = body
                if status == 200 and body.get("reranking"):
                    return dict(body)
                if body.get("model", {}).get("load_failures"):
                    pytest.fail(f"{self.name}: the model failed to load\n{self._errors()}")
            time.sleep(POLL_S)
        pytest.fail(f"{self.name} not ready within its start period: {last}\n{self.logs()[-4000:]}")

    def _errors(self) -> str:
        lines = [ln for ln in self.logs().splitlines() if '"level":"ERROR"' in ln]
        return "\n".join(lines[:3])[-6000:]

    def stop(self, grace_s: float) -> int:
        """SIGTERM (the image's stop signal), SIGKILL after ``grace_s``; the exit code."""
        podman("stop", "--time", str(int(grace_s)), self.name, timeout=grace_s + 120)
        return int(self.state("ExitCode"))

    def pid1_status(self) -> dict[str, str]:
        proc = self.exec("cat", "/proc/1/status")
        assert proc.returncode == 0, proc.stderr
        return dict(line.split(":\t", 1) for line in proc.stdout.splitlines() if ":\t" in line)


def run_container(image: str, port: int, *options: str, env: dict[str, str]) -> Container:
    name = f"rerank-sidecar-test-{uuid.uuid4().hex[:8]}"
    settings = {
        "RERANK_SIDECAR__SERVER__HOST": "127.0.0.1",
        "RERANK_SIDECAR__SERVER__PORT": str(port),
    }
    flags = [f"--env={k}={v}" for k, v in {**settings, **env}.items()]
    podman("run", "--detach", f"--name={name}", "--network=host", *options, *flags, image)
    return Container(name=name, port=port, image=image)


def remove(container: Container) -> None:
    podman("rm", "--force", "--volumes", "--time", "0", container.name, check=False)
