"""Shared fixtures: a real ES-compatible server and a real sidecar process.

``es`` is session-scoped and parametrized over where Elasticsearch comes from:

* ``local``: ``$ES_URL`` when set (any real cluster), else a ``noida-db`` process that
  ``es_integration.local_es`` starts on a free loopback port;
* ``container``: a real Elasticsearch 8.x through testcontainers. It needs a Docker engine,
  so it is a parameter only where one answers (decided once, at collection); without one each
  ES-backed test is collected once, and the session says why in one line;
* ``opensearch``: an ``osmem-server`` process (OpenSearch 3 API) that
  ``es_integration.local_opensearch`` starts, for the tests about what goes over the wire
  (``tests/wire``, the drop-in and wire-fidelity tests, ``tests/proxy/test_wire.py``): each
  of those runs against both an ES and an OpenSearch server. (The relevance tests of the
  rerank path stay on ES: their expectations are ES's BM25 ranks.)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from devtools.fakes import FaultModel
from es_integration.corpus import load_sample, sample_queries_path
from es_integration.local_es import LocalES
from es_integration.local_opensearch import LocalOpenSearch
from es_integration.sidecar_proc import SidecarProcess
from tests.support.search import BUNDLED_MODEL, SAMPLE, base_config
from tests.support.tally import Tally

if TYPE_CHECKING:
    # The app (torch, transformers) is imported where a fixture needs it: the process of
    # pytest-xdist that only hands out tests and prints never does.
    from tests.support.apps import RunningSidecar

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ES_IMAGE = os.environ.get("ES_IMAGE", "docker.elastic.co/elasticsearch/elasticsearch:8.15.3")


@dataclass(frozen=True)
class ESTarget:
    url: str
    kind: str
    #: The local server process when this session started it (tests may stop/restart only
    #: those).
    local: LocalES | LocalOpenSearch | None = None

    @property
    def opensearch(self) -> bool:
        return self.kind == "osmem"


def _docker_engine_reason() -> str | None:
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        # Checked before touching the docker client, which leaks its socket when it fails.
        return "no Docker engine here (no DOCKER_HOST, no /var/run/docker.sock)"
    try:
        import docker
    except ImportError:
        return "the docker package is not installed"
    client = None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        return f"no Docker engine reachable ({type(exc).__name__})"
    finally:
        if client is not None:
            client.close()
    return None


@contextlib.contextmanager
def _container_es() -> Iterator[ESTarget]:
    reason = _docker_engine_reason()
    if reason is not None:
        pytest.skip(f"testcontainers Elasticsearch path needs Docker: {reason}")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = (
        DockerContainer(ES_IMAGE)
        .with_env("discovery.type", "single-node")
        .with_env("xpack.security.enabled", "false")
        .with_env("ES_JAVA_OPTS", "-Xms512m -Xmx512m")
        .with_exposed_ports(9200)
    )
    with container:
        wait_for_logs(container, "started", timeout=180)
        host = container.get_container_host_ip()
        port = container.get_exposed_port(9200)
        yield ESTarget(url=f"http://{host}:{port}", kind="container")


#: Why the ``container`` variant of the ES-backed tests is not collected here (None: it is).
NO_CONTAINER_REASON = _docker_engine_reason()
ES_SOURCES = ["local"] if NO_CONTAINER_REASON else ["local", "container"]
#: The tests about what goes over the wire, which also run against OpenSearch.
OPENSEARCH_DIRS = ("wire",)
OPENSEARCH_FILES = ("test_drop_in.py", "test_wire_fidelity.py", "test_wire.py")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``es`` is parametrized per test: every ES source, plus OpenSearch for the wire tests."""
    if "es" not in metafunc.fixturenames:
        return
    path = Path(str(metafunc.definition.fspath))
    sources = list(ES_SOURCES)
    if path.parent.name in OPENSEARCH_DIRS or path.name in OPENSEARCH_FILES:
        sources.append("opensearch")
    metafunc.parametrize("es", sources, indirect=True, scope="session")


def pytest_report_header(config: pytest.Config, start_path: Path) -> str | None:
    """One line, printed at any verbosity, when ES-backed tests run against local ES only.
    (A header, not a collection report: under pytest-xdist the process that prints does
    not collect.)"""
    if NO_CONTAINER_REASON is None:
        return None
    return f"ES-backed tests: local ES only, container variant not collected: {NO_CONTAINER_REASON}"


#: What the tests reported for the summary (this process's reports, or its workers').
TALLY = Tally()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    TALLY.add(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    TALLY.write(terminalreporter)


@pytest.fixture(scope="session")
def es(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ESTarget]:
    if request.param == "container":
        with _container_es() as target:
            yield target
        return
    if request.param == "opensearch":
        logs = tmp_path_factory.mktemp("opensearch")
        with LocalOpenSearch.start(log_path=logs / "server.log") as server:
            yield ESTarget(url=server.url, kind="osmem", local=server)
        return
    if os.environ.get("ES_URL"):
        yield ESTarget(url=os.environ["ES_URL"].rstrip("/"), kind="es_url")
        return
    with LocalES.start(data_dir=tmp_path_factory.mktemp("es-data")) as local:
        yield ESTarget(url=local.url, kind="noida-db", local=local)


@pytest.fixture(scope="session")
def local_es(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalES]:
    """A noida-db process of the session's own, for tests that are about ES in general
    (not about a particular cluster) and must not depend on Docker."""
    if os.environ.get("ES_URL"):
        pytest.skip("ES_URL is set: tests that start their own local server are skipped")
    with LocalES.start(data_dir=tmp_path_factory.mktemp("local-es")) as local:
        yield local


@pytest.fixture(scope="session")
def sidecar(es: ESTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    """A real ``rerank-sidecar serve`` process in front of ``es``, with reranking rolled out
    to nobody: a pure front door, which clients must not be able to tell from ES."""
    logs = tmp_path_factory.mktemp("sidecar-logs")
    with SidecarProcess.start(
        es.url,
        log_path=logs / "sidecar.log",
        model=BUNDLED_MODEL,
        config={"rollout": {"default": "off"}},
        wait_ready=True,
    ) as proc:
        yield proc


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sample_index(es: ESTarget) -> str:
    """The bundled sample corpus, loaded once per ES target."""
    load_sample(es.url, SAMPLE)
    return SAMPLE


@pytest.fixture(scope="session")
def demo_queries() -> list[dict[str, Any]]:
    lines = sample_queries_path().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
async def bundled(es: ESTarget, sample_index: str) -> AsyncIterator[RunningSidecar]:
    """An in-process sidecar with the bundled MiniLM in front of the session's ES."""
    from tests.support.apps import running_sidecar

    async with running_sidecar(base_config(es.url)) as sc:
        yield sc


@pytest.fixture
async def fake_reranker() -> AsyncIterator[FaultModel]:
    async with FaultModel() as fake:
        yield fake
