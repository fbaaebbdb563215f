"""nginx round robin in front of sidecar replicas (docker/nginx/replicas.conf), run by Debian's
nginx as a process of its own: the tests (tests/shared) and the benchmark (scenario 13)
start it the same way, from the shipped file with only its ``server`` lines and its
``listen`` line replaced by loopback addresses.

``served_by``: the front adds ``X-Served-By: <replica address>`` to every answer (an
``add_header`` line the shipped file does not have: it tells the tests which replica
answered).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.bench.scenarios.split_front import host_port, launch_nginx, nginx_binary
from es_integration.local_es import free_port, stop_group

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "docker" / "nginx" / "replicas.conf"
LISTEN = "listen 9280;"
SERVER_LINE = re.compile(r"^\s*server rerank-sidecar-\d+:9280;\n", re.MULTILINE)
SERVED_BY = "X-Served-By"


class RoundRobinError(RuntimeError):
    pass


def render(replicas: Sequence[str], listen: str, *, served_by: bool = False) -> str:
    """The shipped file with these replicas (host:port) and nginx on ``listen``."""
    text = CONF.read_text(encoding="utf-8")
    lines = SERVER_LINE.findall(text)
    if len(lines) < 1 or text.count(LISTEN) != 1:
        raise RoundRobinError(f"{CONF.name}: expected replica server lines and one {LISTEN!r}")
    servers = "".join(f"    server {r};\n" for r in replicas)
    text = text.replace(lines[0], servers, 1)
    for extra in lines[1:]:
        text = text.replace(extra, "", 1)
    text = text.replace(LISTEN, f"listen {listen};")
    if served_by:
        line = "proxy_pass http://rerank-sidecars;"
        added = f"\n        add_header {SERVED_BY} $upstream_addr always;"
        text = text.replace(line, line + added)
    return text


def _main_conf() -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\n"
        "pid nginx.pid;\n"
        "error_log logs/error.log info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    access_log off;\n"
        "    client_body_temp_path tmp/body;\n"
        "    proxy_temp_path tmp/proxy;\n"
        "    fastcgi_temp_path tmp/fastcgi;\n"
        "    uwsgi_temp_path tmp/uwsgi;\n"
        "    scgi_temp_path tmp/scgi;\n"
        "    include replicas.conf;\n"
        "}\n"
    )


@dataclass
class RoundRobin:
    dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    @contextlib.contextmanager
    def run(
        cls, dir: Path, replicas: Sequence[str], *, served_by: bool = False, timeout: float = 15.0
    ) -> Iterator[RoundRobin]:
        """Render into ``dir``, check with ``nginx -t``, start, wait until it accepts
        connections; stop it on exit. ``replicas``: URLs or host:port."""
        nginx = nginx_binary()
        port = free_port()
        (dir / "logs").mkdir(parents=True, exist_ok=True)
        (dir / "tmp").mkdir(exist_ok=True)
        upstreams = [host_port(r) for r in replicas]
        conf = render(upstreams, f"127.0.0.1:{port}", served_by=served_by)
        (dir / "replicas.conf").write_text(conf, encoding="utf-8")
        (dir / "nginx.conf").write_text(_main_conf(), encoding="utf-8")
        proc = launch_nginx(nginx, dir, RoundRobinError)
        front = cls(dir, port, proc)
        try:
            front._wait_ready(timeout)
            yield front
        finally:
            front.stop()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RoundRobinError(f"nginx exited with {self.proc.returncode}: {self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            time.sleep(0.02)
        raise RoundRobinError(f"nginx was not ready on port {self.port} in {timeout:.0f}s")

    def log(self) -> str:
        try:
            return (self.dir / "logs" / "error.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            stop_group(self.proc, timeout)
