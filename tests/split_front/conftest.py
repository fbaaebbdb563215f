"""The split front (docker/nginx/split-front.conf) run by Debian's nginx as a real process.

``split_front(es_url, sidecar_url)`` renders the shipped file with those upstreams and a
free loopback port into the test's temp dir, checks it with ``nginx -t``, starts ``nginx -p
DIR -c nginx.conf -g 'daemon off;'`` as a child and stops it when the test ends. A missing
nginx fails the tests (``make test`` installs it); it is never a skip.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from devtools.bench.scenarios.split_front import (
    SplitFront,
    SplitFrontError,
    host_port,
    nginx_binary,
)


class StartFront(Protocol):
    def __call__(
        self, es_url: str, sidecar_url: str, *, conf: str | None = None, errors: bool = False
    ) -> SplitFront: ...


@pytest.fixture(scope="session")
def nginx() -> str:
    try:
        return nginx_binary()
    except SplitFrontError as exc:
        pytest.fail(f"{exc}; run `make test`, or apt-get install nginx")


@pytest.fixture
def split_front(nginx: str, tmp_path: Path) -> Iterator[StartFront]:
    with contextlib.ExitStack() as stack:
        started: list[tuple[SplitFront, bool]] = []

        def start(
            es_url: str, sidecar_url: str, *, conf: str | None = None, errors: bool = False
        ) -> SplitFront:
            front = stack.enter_context(
                SplitFront.run(
                    tmp_path / f"nginx-{len(started)}",
                    es=host_port(es_url),
                    sidecar=host_port(sidecar_url),
                    conf=conf,
                )
            )
            started.append((front, errors))
            return front

        yield start
        for front, expected in started:
            # nginx logged no error (an upstream it could not reach, a request it refused),
            # unless the test made one happen.
            logged = [ln for ln in front.log().splitlines() if "[error]" in ln or "[crit]" in ln]
            assert expected or logged == [], "\n".join(logged)


class AccessLog(logging.Handler):
    """The sidecar's access-log lines (logger ``sidecar.access``), as (method, path, record)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def paths(self) -> list[tuple[str, str]]:
        return [(r.__dict__["method"], r.__dict__["path"]) for r in self.records]

    def take(self) -> list[logging.LogRecord]:
        out, self.records = self.records, []
        return out


@pytest.fixture
def access_log() -> Iterator[AccessLog]:
    logger = logging.getLogger("sidecar.access")
    handler = AccessLog()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
