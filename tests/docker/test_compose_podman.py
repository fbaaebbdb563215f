"""docker/docker-compose.yml run for real by podman-compose (Debian's 1.0.3).

Only the Elasticsearch service is replaced, by an override written here: its image cannot
be pulled on a machine that reaches package registries only, so the service runs the local
ES-compatible server the test suite uses (the ``noida-db`` binary of this venv, mounted into
the plain sidecar image, on port 9200 of the compose network), with the host's hard limits
for its ulimits (raising them needs CAP_SYS_RESOURCE). Everything else is the file as
shipped: the bundled image built by `make image`, the sidecar's environment, volume, init,
healthcheck and published port, and the loader, on the project's own network.

Checked as for the plain image: the loader loads the sample corpus, health, readiness, a
reranked search, the compose HEALTHCHECK, the non-root uid, JSON-only logs, and SIGTERM
(`podman-compose stop` with the file's stop grace period) with exit code 0.
"""

from __future__ import annotations

import resource
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from es_integration.local_es import free_port
from tests.docker import podman as pm
from tests.docker.helpers import COMPOSE, IMAGE_UID
from tests.support.search import GENEROUS_BUDGET_MS, multi_match

pytestmark = pytest.mark.slow

_REASON = pm.unavailable_reason()
if _REASON is None and not Path("/usr/bin/podman-compose").exists():
    _REASON = (
        "podman-compose is not installed (make test installs it: apt-get install podman-compose)"
    )
if _REASON is not None:
    pytest.skip(f"compose tests not run: {_REASON}", allow_module_level=True)

SAMPLE = "sample"  # the loader's index (python -m es_integration load)


def _limit(which: int, wanted: int) -> dict[str, int]:
    hard = resource.getrlimit(which)[1]
    value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    return {"soft": value, "hard": value}


def _override(path: Path) -> Path:
    noida = Path(str(files("noida_db").joinpath("noida-db"))).parent
    service = {
        "image": pm.PLAIN,
        "command": "/opt/noida/noida-db start --only elasticsearch --host 0.0.0.0 "
        "--elasticsearch-port 9200 --data-dir /tmp/noida",
        "volumes": [f"{noida}:/opt/noida:ro"],
        # The file's are ES's own (memlock unlimited, nofile 65536); every limit must be
        # set, or podman fills the others with defaults above the host's hard limits.
        "ulimits": {
            "memlock": _limit(resource.RLIMIT_MEMLOCK, 8 << 20),
            "nofile": _limit(resource.RLIMIT_NOFILE, 20000),
            "nproc": _limit(resource.RLIMIT_NPROC, 32768),
        },
        "healthcheck": {
            "test": 'python -c "import urllib.request; '
            "urllib.request.urlopen('http://localhost:9200/_cluster/health')\""
        },
    }
    # podman-compose 1.0.3 resolves short names through registries.conf; these are local.
    local = {"image": pm.BUNDLED}
    # As every test that asserts a rerank: the model gets all the time it needs on a busy
    # machine (the default budget would fall back to ES order, correctly, when it is short).
    sidecar = {
        **local,
        "environment": {"RERANK_SIDECAR__RERANK__BUDGET_MS": str(GENEROUS_BUDGET_MS)},
    }
    doc = {"services": {"elasticsearch": service, "sidecar": sidecar, "loader": local}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Stack:
    sidecar: pm.Container
    compose: Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pm.build_images()
    override = _override(tmp_path_factory.mktemp("compose") / "override.yml")
    project = f"rerank-sidecar-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = pm.podman_env(
        ES_PORT=str(free_port()),
        RERANK_SIDECAR_PORT=str(port),
        RERANK_MODEL=pm.BUNDLED_MODEL,
        HF_HUB_OFFLINE="1",
    )
    env.pop("RERANK_SIDECAR_ADMIN_TOKEN", None)
    base = ["podman-compose", "-p", project, "-f", str(COMPOSE), "-f", str(override)]

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*base, *args], capture_output=True, text=True, env=env, timeout=600, check=False
        )
        if proc.returncode != 0:
            pytest.fail(f"podman-compose {' '.join(args)}: {(proc.stdout + proc.stderr)[-4000:]}")
        return proc

    try:
        # podman-compose 1.0.3 has no profiles: naming the services keeps the loader out.
        compose("up", "-d", "elasticsearch", "sidecar")
        yield Stack(pm.Container(name=f"{project}_sidecar_1", port=port, image=pm.BUNDLED), compose)
    finally:
        subprocess.run(
            [*base, "down", "-v"], capture_output=True, env=env, timeout=600, check=False
        )


def test_health_readiness_and_the_loader(stack: Stack) -> None:
    ready = stack.sidecar.wait_ready()
    assert ready["es"] == {"url": "http://elasticsearch:9200", "reachable": True}
    status, _, _ = pm.http(f"{stack.sidecar.url}/_sidecar/health")
    assert status == 200
    proc = stack.compose("run", "--rm", "--no-deps", "loader")
    assert f"into '{SAMPLE}'" in proc.stdout + proc.stderr


def test_a_search_through_the_stack_is_reranked(stack: Stack) -> None:
    body = multi_match("library card not working", size=3)
    status, headers, answer = pm.http(f"{stack.sidecar.url}/{SAMPLE}/_search", body)
    assert status == 200, answer
    assert headers["X-Rerank"].startswith("applied"), headers


def test_the_compose_healthcheck_says_healthy(stack: Stack) -> None:
    proc = pm.podman("healthcheck", "run", stack.sidecar.name, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runs_as_the_image_user_under_init(stack: Stack) -> None:
    # init: true puts catatonit (podman-init) at PID 1; the server is its child.
    top = pm.podman("top", stack.sidecar.name, "pid", "huser", "args").stdout.splitlines()[1:]
    assert top and all(line.split()[1] == str(IMAGE_UID) for line in top), top
    assert any("rerank-sidecar serve" in line for line in top)


def test_no_compose_variable_is_left_unsubstituted(stack: Stack) -> None:
    env = pm.podman("inspect", "--format", "{{json .Config.Env}}", stack.sidecar.name).stdout
    assert "${" not in env and "RERANK_SIDECAR_ADMIN_TOKEN" not in env


def test_the_log_is_json_lines_only(stack: Stack) -> None:
    records = pm.json_records(stack.sidecar.logs())
    assert any(r["logger"] == "sidecar.models" and " ready" in r["msg"] for r in records)


def test_sigterm_stops_the_stack_sidecar_cleanly(stack: Stack) -> None:
    stack.compose("stop", "-t", str(int(pm.compose_grace_s())), "sidecar")
    assert stack.sidecar.state("ExitCode") == "0"
    assert pm.json_records(stack.sidecar.logs())[-1]["msg"] == "stopped"
