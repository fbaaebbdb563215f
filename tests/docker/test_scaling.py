"""Many replicas as one service: docker/k8s-scaling (Valkey for the shared state, the HPA on
the model's queue wait, the KEDA ScaledObject) and docker/docker-compose.shared.yml (two
replicas, Redis, nginx round robin), checked against each other, the sidecar's config and
metrics, and docker/nginx/replicas.conf. Validated offline (``kubernetes-validate``, the
Compose CLI); nothing is started.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sidecar import metrics
from sidecar.config import build_config
from tests.docker.helpers import COMPOSE, DOCKER, K8S, load_all_yaml, load_yaml, tool

SCALING = DOCKER / "k8s-scaling"
SHARED_COMPOSE = COMPOSE.with_name("docker-compose.shared.yml")
REPLICAS_CONF = DOCKER / "nginx" / "replicas.conf"
QUEUE_METRIC = "rerank_sidecar_queue_wait_seconds"
CONFIG = ("config", "--format", "json")


def _objects(name: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in load_all_yaml(SCALING / name)}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _exported_metrics() -> set[str]:
    source = Path(metrics.__file__).read_text(encoding="utf-8")
    return set(re.findall(r'"(rerank_sidecar_[a-z_]+)"', source))


def test_kustomization_names_files_that_exist() -> None:
    kustomization = load_yaml(SCALING / "kustomization.yaml")
    assert kustomization["resources"] == ["../k8s", "redis.yaml"]
    for patch in kustomization["patches"]:
        assert (SCALING / patch["path"]).is_file()


def test_redis_is_a_bounded_cache_with_a_password_from_a_secret() -> None:
    objects = _objects("redis.yaml")
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--maxmemory-policy"] == "allkeys-lru" and flags["--maxmemory"].endswith("mb")
    assert (flags["--save"], flags["--appendonly"]) == ("", "no")
    assert flags["--requirepass"] == "$(REDIS_PASSWORD)"
    secret = _env(container)["REDIS_PASSWORD"]["secretKeyRef"]
    assert secret["name"] == "rerank-sidecar-redis"
    assert objects["Service"]["spec"]["ports"][0]["port"] == 6379


def test_the_sidecar_patch_points_at_redis_with_a_password_file() -> None:
    (patch,) = load_all_yaml(SCALING / "shared-patch.yaml")
    deployment = next(
        d for d in load_all_yaml(K8S / "deployment.yaml") if d["kind"] == "Deployment"
    )
    assert patch["metadata"]["name"] == deployment["metadata"]["name"]
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    (base,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["name"] == base["name"]
    env = _env(container)
    url = env["RERANK_SIDECAR__SHARED__URL"]
    service = _objects("redis.yaml")["Service"]["metadata"]["name"]
    assert url == f"redis://{service}:6379/0"
    assert build_config({"shared": {"url": url}}).shared.url == url
    (mount,) = container["volumeMounts"]
    assert env["RERANK_SIDECAR__SHARED__PASSWORD_FILE"].startswith(mount["mountPath"] + "/")
    (volume,) = patch["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["secretName"] == "rerank-sidecar-redis"


def test_autoscaling_follows_the_queue_wait_the_sidecar_exports() -> None:
    assert QUEUE_METRIC in _exported_metrics()
    hpa = _objects("hpa-queue.yaml")["HorizontalPodAutoscaler"]
    cpu_hpa = load_yaml(K8S / "hpa.yaml")
    # It replaces the CPU HPA in place (one HPA per Deployment) and keeps its CPU metric.
    assert hpa["metadata"]["name"] == cpu_hpa["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"] == cpu_hpa["spec"]["scaleTargetRef"]
    pods, cpu = hpa["spec"]["metrics"]
    assert pods["pods"]["metric"]["name"] == QUEUE_METRIC
    assert cpu == cpu_hpa["spec"]["metrics"][0]
    keda = _objects("keda-scaledobject.yaml")["ScaledObject"]
    assert keda["spec"]["scaleTargetRef"]["name"] == cpu_hpa["spec"]["scaleTargetRef"]["name"]
    (prometheus,) = [t for t in keda["spec"]["triggers"] if t["type"] == "prometheus"]
    assert QUEUE_METRIC in prometheus["metadata"]["query"]


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_kubernetes_objects_validate(version: str) -> None:
    files = [SCALING / "redis.yaml", SCALING / "hpa-queue.yaml"]
    proc = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", version, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" passed ") == 3, proc.stdout


def test_compose_override_runs_two_replicas_sharing_redis_behind_the_front() -> None:
    proc = subprocess.run(
        [tool("docker-compose"), "-f", str(COMPOSE), "-f", str(SHARED_COMPOSE), *CONFIG],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    assert {"redis", "sidecar", "sidecar-2", "front"} <= set(services)
    # Redis is never a dependency of search: no replica waits for it.
    for name in ("sidecar", "sidecar-2"):
        assert "redis" not in services[name].get("depends_on", {})
        url = services[name]["environment"]["RERANK_SIDECAR__SHARED__URL"]
        assert url == "redis://redis:6379/0" and build_config({"shared": {"url": url}})
    assert "allkeys-lru" in " ".join(services["redis"]["command"])
    # The front's upstream lines name the replicas by their network aliases.
    upstreams = re.findall(r"^\s*server (\S+):9280;", REPLICAS_CONF.read_text(), re.MULTILINE)
    aliases = [
        alias
        for name in ("sidecar", "sidecar-2")
        for alias in services[name]["networks"]["default"]["aliases"]
    ]
    assert upstreams == aliases
    (mount,) = services["front"]["volumes"]
    assert mount["source"] == str(REPLICAS_CONF)
