"""Debian's ``redis-server`` as a process of its own on a free loopback port, for the tests
and the benchmarks (``make test`` installs it, as it installs nginx).

Nothing is written to disk (no RDB, no AOF); the working directory is the caller's temp
dir. What a test does to it is what an operator's Redis does: it is stopped and started
again on the same port (:meth:`RedisServer.stop`, :meth:`RedisServer.start`), paused
(``DEBUG SLEEP``, :meth:`RedisServer.pause`), or filled (``maxmemory`` with ``noeviction``,
:meth:`RedisServer.fill`). ``DEBUG`` is enabled for loopback clients only.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from es_integration.local_es import free_port, stop_group

#: Debian's (``apt-get install redis-server``).
REDIS_SERVER = "/usr/bin/redis-server"


class RedisError(RuntimeError):
    pass


def redis_binary() -> str:
    found = REDIS_SERVER if Path(REDIS_SERVER).is_file() else shutil.which("redis-server")
    if found is None:
        raise RedisError("redis-server is not installed (make test installs Debian's)")
    return found


@dataclass
class RedisServer:
    """One ``redis-server`` child process; ``password`` turns ``requirepass`` on."""

    dir: Path
    port: int = 0
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _sleepers: list[threading.Thread] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    @classmethod
    @contextlib.contextmanager
    def run(cls, dir: Path, *, password: str | None = None) -> Iterator[RedisServer]:
        dir.mkdir(parents=True, exist_ok=True)
        server = cls(dir, free_port(), password)
        server.start()
        try:
            yield server
        finally:
            server.stop()

    def start(self, timeout: float = 15.0) -> None:
        """Start (again, on the same port) and wait until it answers PING."""
        args = [
            redis_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--enable-debug-command", "local",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisError(f"redis-server exited with {self.proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError, RedisError):
                if self.command("PING") == "PONG":
                    return
            time.sleep(0.02)
        raise RedisError(f"redis-server did not answer on port {self.port} in {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_group(self.proc, timeout)
        for sleeper in self._sleepers:
            sleeper.join(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # --- talking to it (RESP over a plain socket: no client library between) --------------

    def command(self, *args: str, timeout: float = 5.0) -> str | int | list[object] | None:
        """One command, its reply decoded (an error reply raises RedisError)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout) as sock:
            stream = sock.makefile("rwb")
            if self.password is not None:
                _send(stream, "AUTH", self.password)
                _read(stream)
            _send(stream, *args)
            return _read(stream)

    def keys(self, pattern: str = "*") -> list[str]:
        found = self.command("KEYS", pattern)
        return [str(k) for k in found] if isinstance(found, list) else []

    def info(self, section: str) -> dict[str, str]:
        text = self.command("INFO", section)
        pairs = (line.split(":", 1) for line in str(text).splitlines() if ":" in line)
        return {k: v for k, v in pairs}

    def pause(self, seconds: float) -> threading.Thread:
        """``DEBUG SLEEP``: Redis answers nobody for ``seconds`` (its connection is held by
        a thread; the call returns once the command is sent and Redis stopped answering)."""
        sent = threading.Event()

        def sleep() -> None:
            with socket.create_connection(("127.0.0.1", self.port), seconds + 10) as sock:
                stream = sock.makefile("rwb")
                if self.password is not None:
                    _send(stream, "AUTH", self.password)
                    _read(stream)
                _send(stream, "DEBUG", "SLEEP", f"{seconds:g}")
                sent.set()
                with contextlib.suppress(OSError, RedisError):
                    _read(stream)

        thread = threading.Thread(target=sleep, daemon=True)
        thread.start()
        sent.wait(10)
        self._sleepers.append(thread)
        return thread

    def fill(self) -> None:
        """Full: ``maxmemory`` just under what it uses now, with ``noeviction``, so every
        write is refused with OOM and every read still answered."""
        used = int(self.info("memory")["used_memory"])
        self.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.command("CONFIG", "SET", "maxmemory", str(max(1, used // 2)))

    def unfill(self) -> None:
        self.command("CONFIG", "SET", "maxmemory", "0")


class _Stream(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...
    def read(self, size: int = -1, /) -> bytes: ...
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


def _send(stream: _Stream, *args: str) -> None:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    stream.write(b"".join(parts))
    stream.flush()


def _read(stream: _Stream) -> str | int | list[object] | None:
    line: bytes = stream.readline()
    if not line:
        raise RedisError("connection closed")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data: bytes = stream.read(n + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(stream) for _ in range(n)]
    raise RedisError(f"unexpected reply {line!r}")
