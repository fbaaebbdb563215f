"""Replicas that share their state: a real ``redis-server`` (a process of the tests' own on
a free port, ``devtools.redis_proc``), real sidecar processes in front of the session's
ES, and Debian's nginx round-robin in front of them (``docker/nginx/replicas.conf``,
``devtools.round_robin``). A missing redis-server or nginx fails the tests (``make test``
installs both); it is never a skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.redis_proc import RedisError, RedisServer, redis_binary
from devtools.round_robin import RoundRobin
from es_integration.sidecar_proc import SidecarProcess
from sidecar.config import merge
from tests.conftest import ESTarget
from tests.shared.support import ADMIN_TOKEN, WINDOW
from tests.support.search import BUNDLED_MODEL, base_config


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    try:
        return redis_binary()
    except RedisError as exc:
        pytest.fail(f"{exc}; run `make test`, or apt-get install redis-server")


@pytest.fixture(scope="module")
def redis(
    redis_server_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    with RedisServer.run(tmp_path_factory.mktemp("redis")) as server:
        yield server


def replica_config(es_url: str, redis_url: str | None, **over: Any) -> dict[str, Any]:
    shared = {"shared": {"url": redis_url}} if redis_url else {}
    return merge(
        # Annotated: the tests read each hit's original rank and rerank score (_rerank).
        base_config(
            es_url,
            admin={"token": ADMIN_TOKEN},
            rerank={"window": WINDOW, "annotate": True},
            **shared,
        ),
        over,
    )


def start_replicas(es_url: str, logs: Path, configs: list[dict[str, Any]]) -> list[SidecarProcess]:
    """Sidecar processes, started side by side (each loads its model), all warm."""
    with ThreadPoolExecutor(len(configs)) as pool:
        started = [
            pool.submit(
                SidecarProcess.start,
                es_url,
                log_path=logs / f"replica-{i}.log",
                model=BUNDLED_MODEL,
                config=config,
                wait_ready=True,
                timeout=180,
            )
            for i, config in enumerate(configs)
        ]
        return [future.result() for future in started]


@dataclass
class Replicas:
    """Replica ``a`` (reranks within a generous budget), replica ``b`` (busier: its budget
    leaves no time to score anything new, as a replica whose model queue is full), both
    sharing ``redis``, and the round-robin ``front``."""

    a: SidecarProcess
    b: SidecarProcess
    front: RoundRobin
    redis: RedisServer

    def name(self, served_by: str) -> str:
        """'a' or 'b' for the address nginx says it sent a request to."""
        return "a" if served_by.endswith(f":{self.a.port}") else "b"


@pytest.fixture(scope="module")
def replicas(
    es: ESTarget,
    sample_index: str,
    redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Replicas]:
    logs = tmp_path_factory.mktemp("replicas")
    configs = [
        replica_config(es.url, redis.url, rerank={"response_cache": {"enabled": True}}),
        replica_config(
            es.url, redis.url, rerank={"budget_ms": 5, "response_cache": {"enabled": True}}
        ),
    ]
    a, b = start_replicas(es.url, logs, configs)
    with contextlib.ExitStack() as stack:
        stack.callback(a.stop)
        stack.callback(b.stop)
        front = stack.enter_context(RoundRobin.run(logs / "nginx", [a.url, b.url], served_by=True))
        yield Replicas(a, b, front, redis)
