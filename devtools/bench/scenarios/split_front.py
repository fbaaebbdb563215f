"""Scenario 6: the split front (docker/nginx/split-front.conf) beside the all-in-one sidecar.

Pass-through requests (``POST /bench/_count`` with a query body: not a search, so nginx
sends it straight to ES) go three ways in interleaved rounds: directly to the stub ES,
through nginx's split front, and through the all-in-one sidecar's Python pass-through.
Searches (rerank rolled out to nobody) go directly, through the sidecar, and through nginx
and then the sidecar: what the front's extra hop costs the requests it does not take off
the sidecar.

This module also runs the shipped nginx configuration as a real process
(:class:`SplitFront`): the benchmark and tests/split_front start it the same way, from the
file in docker/nginx/ with only its upstream ``server`` lines and its ``listen`` line
replaced by loopback addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools.bench.contenders import LoadTarget, interleaved, latency_table
from devtools.bench.results import Goal, Section
from devtools.bench.scenarios.common import QUERIES, search_body
from devtools.bench.servers import Bench
from devtools.machine import load_average, machine_description, now_text
from es_integration.local_es import free_port, stop_group

ROOT = Path(__file__).resolve().parents[3]
CONF = ROOT / "docker" / "nginx" / "split-front.conf"
#: Debian's nginx (``make test`` installs it).
NGINX = "/usr/sbin/nginx"
#: The lines of the shipped file that name where things are; nothing else is changed.
ES_SERVER = "server elasticsearch:9200;"
SIDECAR_SERVER = "server rerank-sidecar:9280;"
LISTEN = "listen 9200;"

INDEX = "bench"


class SplitFrontError(RuntimeError):
    pass


def nginx_binary() -> str:
    found = NGINX if Path(NGINX).is_file() else shutil.which("nginx")
    if found is None:
        raise SplitFrontError("nginx is not installed (make test installs Debian's: apt nginx)")
    return found


def launch_nginx(nginx: str, dir: Path, error: type[Exception]) -> subprocess.Popen[bytes]:
    """Check ``dir``'s ``nginx.conf`` with ``nginx -t`` (``error`` if it fails), then start
    nginx in the foreground in a session of its own (its process group is stopped as one)."""
    base = [nginx, "-p", f"{dir}/", "-c", "nginx.conf", "-e", "logs/error.log"]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise error(f"nginx -t failed:\n{check.stderr}")
    return subprocess.Popen(
        [*base, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        # Its messages go to logs/error.log (-e), from the first one on.
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def host_port(url: str) -> str:
    """``http://127.0.0.1:9200/`` -> ``127.0.0.1:9200``."""
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def render(es: str, sidecar: str, listen: str, text: str | None = None) -> str:
    """The shipped configuration with ES at ``es``, the sidecar at ``sidecar`` (host:port)
    and nginx listening on ``listen``. Each replaced line must occur exactly once."""
    text = CONF.read_text(encoding="utf-8") if text is None else text
    for old, new in (
        (ES_SERVER, f"server {es};"),
        (SIDECAR_SERVER, f"server {sidecar};"),
        (LISTEN, f"listen {listen};"),
    ):
        if text.count(old) != 1:
            raise SplitFrontError(f"{CONF.name}: expected one line {old!r}")
        text = text.replace(old, new)
    return text


def main_conf(*, access_log: bool, workers: int) -> str:
    """The top-level nginx.conf around the shipped file: every path in the prefix dir."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    log = "access_log logs/access.log;" if access_log else "access_log off;"
    return (
        f"{user}worker_processes {workers};\n"
        "pid nginx.pid;\n"
        "error_log logs/error.log info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"    {log}\n"
        "    client_body_temp_path tmp/body;\n"
        "    proxy_temp_path tmp/proxy;\n"
        "    fastcgi_temp_path tmp/fastcgi;\n"
        "    uwsgi_temp_path tmp/uwsgi;\n"
        "    scgi_temp_path tmp/scgi;\n"
        "    include split-front.conf;\n"
        "}\n"
    )


@dataclass
class SplitFront:
    """nginx running the split-front configuration, as a non-daemon child process."""

    dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.dir / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.dir / "logs" / "access.log"

    @classmethod
    @contextlib.contextmanager
    def run(
        cls,
        dir: Path,
        *,
        es: str,
        sidecar: str,
        access_log: bool = True,
        workers: int = 1,
        timeout: float = 15.0,
        conf: str | None = None,
    ) -> Iterator[SplitFront]:
        """Render into ``dir`` (the shipped file, or ``conf``: a variant of its text), check
        with ``nginx -t``, start, wait until it accepts connections; stop it on exit."""
        nginx = nginx_binary()
        port = free_port()
        (dir / "logs").mkdir(parents=True, exist_ok=True)
        (dir / "tmp").mkdir(exist_ok=True)
        (dir / "split-front.conf").write_text(
            render(es, sidecar, f"127.0.0.1:{port}", conf), encoding="utf-8"
        )
        (dir / "nginx.conf").write_text(
            main_conf(access_log=access_log, workers=workers), encoding="utf-8"
        )
        proc = launch_nginx(nginx, dir, SplitFrontError)
        front = cls(dir, port, proc)
        try:
            front._wait_ready(workers, timeout)
            yield front
        finally:
            front.stop()

    def _wait_ready(self, workers: int, timeout: float) -> None:
        """Poll (bounded) until the port accepts a connection and every worker is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SplitFrontError(f"nginx exited with {self.proc.returncode}: {self.log()}")
            if len(self.worker_pids()) == workers and self._accepts():
                return
            time.sleep(0.02)
        raise SplitFrontError(f"nginx was not ready on port {self.port} in {timeout:.0f}s")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5):
                return True
        except OSError:
            return False

    def log(self) -> str:
        try:
            return self.error_log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        """The worker processes (the master only hands connections to them)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == self.proc.pid:
                pids.append(int(entry.name))
        return sorted(pids)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to nginx's process group (master and workers), then SIGKILL."""
        if self.proc.poll() is None:
            stop_group(self.proc, timeout)


# --- the benchmark -------------------------------------------------------------------------


def _targets(
    kind: str,
    path: str,
    bodies: list[bytes],
    contenders: list[tuple[str, str, int | None]],
    concurrency: int,
    per_round: int,
) -> list[LoadTarget]:
    return [
        LoadTarget(f"{label} ({kind})", url + path, lambda _: bodies, concurrency, per_round, pid)
        for label, url, pid in contenders
    ]


def _count_body(query: str) -> bytes:
    """A _count with the query a search would send: a pass-through with a JSON body."""
    return json.dumps(
        {"query": {"multi_match": {"query": query, "fields": ["title^2", "body"]}}}
    ).encode()


def _added(t: LoadTarget, base: LoadTarget, q: float) -> float:
    return (t.result.pct(q) - base.result.pct(q)) * 1000


def _comparison(direct: LoadTarget, front: LoadTarget, sidecar: LoadTarget) -> str:
    f50, s50 = _added(front, direct, 50), _added(sidecar, direct, 50)
    f99, s99 = _added(front, direct, 99), _added(sidecar, direct, 99)
    ratio = f"{s50 / f50:.0f}×" if f50 > 0 else "n/a (nginx added nothing measurable)"
    return (
        f"Added to a pass-through request at c={direct.concurrency}: nginx {f50:+.2f} ms p50 / "
        f"{f99:+.2f} ms p99, the sidecar {s50:+.2f} ms p50 / {s99:+.2f} ms p99 (the sidecar "
        f"adds {ratio} what nginx adds at p50). Throughput: nginx "
        f"{front.result.throughput:.0f} req/s, sidecar {sidecar.result.throughput:.0f} req/s "
        f"(nginx / sidecar = {front.result.throughput / max(sidecar.result.throughput, 1):.2f}×"
        f"), direct {direct.result.throughput:.0f} req/s. CPU per request: nginx's worker "
        f"{front.server_us or 0:.0f} µs, the sidecar {sidecar.server_us or 0:.0f} µs."
    )


def run(b: Bench) -> Section:
    sec = Section(6, "Split front: nginx for pass-through traffic vs the all-in-one sidecar")
    started, load_before = time.time(), load_average()
    alone = f"python -m devtools.bench{' --quick' if b.quick else ''} --only 6"
    try:
        nginx = nginx_binary()
    except SplitFrontError as exc:
        sec.body += [f"Not measured: {exc}.", ""]
        sec.goals.append(Goal("6 split front", "nginx adds less than the sidecar", str(exc), None))
        return sec
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    es_url, stub_pid = b.start_fake("es-stub-split", "es", "--hits", "10")
    model_url, _ = b.start_fake("model-split", "model")
    sc = b.sidecar(
        "split-all-in-one",
        es_url,
        model_url + "/v1/rerank",
        {"rollout": {"default": "off"}},
    )
    front = b.stack.enter_context(
        SplitFront.run(
            b.work / "split-front-nginx",
            es=host_port(es_url),
            sidecar=host_port(sc.url),
            access_log=False,
        )
    )
    (worker,) = front.worker_pids()
    sec.body += [
        f"nginx: {version.stderr.strip()} running docker/nginx/split-front.conf with one worker "
        "process and its access log off (the sidecar's access log is off too; server CPU below "
        "is nginx's worker). Stub ES as in scenario 1; the sidecar's model is a fake remote "
        "server that is never called (rerank rolled out to nobody).",
        "",
    ]
    rounds = b.scale(4, 2)
    groups = [(16, b.scale(1500, 500))]
    if not b.quick:
        groups.append((1, 400))
    counts = [_count_body(q) for q in QUERIES]
    searches = [search_body(q) for q in QUERIES]
    for concurrency, per_round in groups:
        passing = _targets(
            "pass-through",
            f"/{INDEX}/_count",
            counts,
            [
                ("direct ES", es_url, stub_pid),
                ("nginx split front", front.url, worker),
                ("all-in-one sidecar", sc.url, sc.proc.pid),
            ],
            concurrency,
            per_round,
        )
        search = _targets(
            "search",
            f"/{INDEX}/_search",
            searches,
            [
                ("direct ES", es_url, stub_pid),
                ("all-in-one sidecar", sc.url, sc.proc.pid),
                ("nginx -> sidecar", front.url, sc.proc.pid),
            ],
            concurrency,
            per_round,
        )
        asyncio.run(interleaved(passing, rounds, warm=300))
        asyncio.run(interleaved(search, rounds, warm=300))
        direct, via_front, via_sidecar = passing
        sec.body += [
            f"Pass-through (`POST /{INDEX}/_count`), concurrency {concurrency}, {rounds} "
            "interleaved rounds:",
            "",
            latency_table(passing),
            "",
            _comparison(direct, via_front, via_sidecar),
            "",
            f"Searches (`POST /{INDEX}/_search`, rerank rolled out to nobody), concurrency "
            f"{concurrency}, {rounds} interleaved rounds (server CPU: the sidecar's):",
            "",
            latency_table(search),
            "",
            f"nginx in front of the sidecar adds "
            f"{_added(search[2], search[1], 50):+.2f} ms p50 / "
            f"{_added(search[2], search[1], 99):+.2f} ms p99 to a search over the sidecar alone.",
            "",
        ]
        if concurrency == 16:
            f50, s50 = _added(via_front, direct, 50), _added(via_sidecar, direct, 50)
            sec.goals += [
                Goal(
                    "6 split front, pass-through c=16",
                    "nginx adds less p50 than the sidecar",
                    f"nginx {f50:+.2f} ms vs sidecar {s50:+.2f} ms; "
                    f"{via_front.result.throughput:.0f} vs "
                    f"{via_sidecar.result.throughput:.0f} req/s",
                    f50 < s50,
                    "" if f50 < s50 else _comparison(direct, via_front, via_sidecar),
                ),
                Goal(
                    "6 split front, search c=16",
                    "none (the extra hop, measured)",
                    f"nginx -> sidecar {_added(search[2], search[1], 50):+.2f} ms p50 over the "
                    "sidecar alone",
                    None,
                ),
            ]
    # Its own provenance: this section may be measured apart from the rest of the suite.
    sec.body[0:0] = [
        f"Measured {now_text(started)} on {machine_description()} "
        f"({'quick' if b.quick else 'full'}, {(time.time() - started) / 60:.1f} min; alone: "
        f"`{alone}`). Load average before: {load_before}; after: {load_average()}.",
        "",
    ]
    return sec
