"""docker/healthcheck.py, the images' HEALTHCHECK, run as the container runs it: a child
``python healthcheck.py`` whose config comes from $RERANK_SIDECAR_CONFIG and the
RERANK_SIDECAR__* variables, against a stub server on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.docker.helpers import HEALTH_PATH, HEALTHCHECK, READY_PATH


class _Stub(BaseHTTPRequestHandler):
    ready = False

    def do_GET(self) -> None:
        if self.path == HEALTH_PATH:
            status = 200
        elif self.path == READY_PATH:
            status = 200 if type(self).ready else 503
        else:
            status = 404
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[int, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {"ready": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _run(config: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANK_SIDECAR")}
    env.update(RERANK_SIDECAR_CONFIG=str(config), **extra)
    # A proxy that does not exist: the loopback probe must not go through it.
    env.update(HTTP_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _config(tmp_path: Path, port: int, host: str = "0.0.0.0") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"server:\n  host: '{host}'\n  port: {port}\n", encoding="utf-8")
    return path


def test_ready_is_healthy(tmp_path: Path, stub: tuple[int, type[_Stub]]) -> None:
    port, handler = stub
    handler.ready = True
    proc = _run(_config(tmp_path, port))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"healthy: http://127.0.0.1:{port}{READY_PATH}"


def test_not_ready_is_unhealthy(tmp_path: Path, stub: tuple[int, type[_Stub]]) -> None:
    port, _ = stub
    proc = _run(_config(tmp_path, port))
    assert proc.returncode == 1
    assert proc.stdout.strip() == f"unhealthy: http://127.0.0.1:{port}{READY_PATH} answered 503"
    # The liveness path is separate and answers while the model is still loading.
    assert _run(_config(tmp_path, port), HEALTH_PATH).returncode == 0


def test_the_port_follows_environment_overrides(
    tmp_path: Path, stub: tuple[int, type[_Stub]]
) -> None:
    port, handler = stub
    handler.ready = True
    wrong = _config(tmp_path, 1)
    proc = _run(wrong, RERANK_SIDECAR__SERVER__PORT=str(port))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nothing_listening_is_unhealthy(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = _run(_config(tmp_path, port))
    assert proc.returncode == 1
    assert proc.stdout.startswith("unhealthy: http://")


def test_a_bad_config_is_unhealthy_in_one_line(tmp_path: Path) -> None:
    proc = _run(_config(tmp_path, 70000))
    assert proc.returncode == 1
    assert proc.stdout.startswith("unhealthy: config error: server.port")
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("host", "url_host"),
    [("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("10.1.2.3", "10.1.2.3"), ("fd00::1", "[fd00::1]")],
)
def test_probe_url(host: str, url_host: str, tmp_path: Path) -> None:
    config = _config(tmp_path, 9280, host=host)
    code = (
        "import runpy, sys; ns = runpy.run_path(sys.argv[1]);"
        " print(ns['probe_url'](), ns['probe_url']('/x'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANK_SIDECAR")}
    env["RERANK_SIDECAR_CONFIG"] = str(config)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(HEALTHCHECK)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    assert proc.stdout.split() == [
        f"http://{url_host}:9280{READY_PATH}",
        f"http://{url_host}:9280/x",
    ]
