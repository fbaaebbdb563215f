"""docker/k8s/*.yaml: parsed, cross-checked against each other and the images, and
validated against the Kubernetes OpenAPI schemas (``kubernetes-validate``, offline).
Nothing is applied to a cluster.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sidecar.config import SidecarConfig, build_config
from tests.docker.helpers import (
    HEALTH_PATH,
    IMAGE_CONFIG_PATH,
    IMAGE_UID,
    K8S,
    READY_PATH,
    load_all_yaml,
    load_yaml,
    tool,
)

#: Optional objects, applied by hand and so not in kustomization.yaml (docs/deployment.md).
SPLIT_FRONT = K8S / "ingress-split-front.yaml"
OPTIONAL = [SPLIT_FRONT]
MANIFESTS = sorted(
    p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml" and p not in OPTIONAL
)
#: The oldest Kubernetes these manifests are checked against, and the newest schema shipped.
K8S_VERSIONS = ["1.29.0", "1.37.0"]


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in load_all_yaml(path):
            assert doc["kind"] not in out, f"two {doc['kind']} objects"
            out[doc["kind"]] = doc
    return out


@pytest.fixture(scope="module")
def config(docs: dict[str, dict[str, Any]]) -> SidecarConfig:
    return build_config(yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"]))


@pytest.fixture(scope="module")
def pod(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = docs["Deployment"]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["containers"]
    c: dict[str, Any] = only
    return c


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _named_port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def test_every_file_parses_and_the_expected_kinds_exist(docs: dict[str, Any]) -> None:
    assert {"Deployment", "ConfigMap", "Service", "HorizontalPodAutoscaler"} <= set(docs)
    for path in MANIFESTS:
        for doc in load_all_yaml(path):
            assert doc["apiVersion"] and doc["metadata"]["name"]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_configmap_holds_a_valid_config(config: SidecarConfig) -> None:
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 9280


def test_probes_point_at_the_sidecar_endpoints(
    container: dict[str, Any], config: SidecarConfig
) -> None:
    assert _named_port(container, "http") == config.server.port
    probes = {
        "livenessProbe": HEALTH_PATH,
        "startupProbe": HEALTH_PATH,
        "readinessProbe": READY_PATH,
    }
    for probe, path in probes.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert _named_port(container, get["port"]) == config.server.port, probe


def test_config_comes_from_the_configmap(
    docs: dict[str, Any], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    assert _env(container)["RERANK_SIDECAR_CONFIG"] == IMAGE_CONFIG_PATH
    mount_dir, file_name = IMAGE_CONFIG_PATH.rsplit("/", 1)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == mount_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert file_name in docs["ConfigMap"]["data"]


def test_admin_token_comes_from_a_secret(container: dict[str, Any]) -> None:
    ref = _env(container)["RERANK_SIDECAR_ADMIN_TOKEN"]["secretKeyRef"]
    assert ref["name"] and ref["key"]


def test_model_cache_and_tmp_are_writable_volumes(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    hf_home = _env(container)["HF_HOME"]
    assert hf_home.startswith("/models/")
    assert (
        "emptyDir" in volumes[mounts["/models"]]
        or "persistentVolumeClaim" in (volumes[mounts["/models"]])
    )
    # The root filesystem is read-only; $HOME points into the writable /tmp volume.
    assert _env(container)["HOME"] == "/tmp" and "/tmp" in mounts


def test_runs_as_the_images_non_root_user(pod: dict[str, Any], container: dict[str, Any]) -> None:
    pod_sc = pod["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == pod_sc["runAsGroup"] == pod_sc["fsGroup"] == IMAGE_UID
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False


def _quantity(value: str | int) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3}
    text = str(value)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_resources_are_requested_and_limited(
    container: dict[str, Any], config: SidecarConfig
) -> None:
    res = container["resources"]
    for key in ("cpu", "memory"):
        assert _quantity(res["requests"][key]) <= _quantity(res["limits"][key]), key
    # torch must not start more threads than the pod may use.
    assert config.tuning.model.cpu_threads == _quantity(res["limits"]["cpu"])


def test_shutdown_fits_the_grace_period(
    pod: dict[str, Any], container: dict[str, Any], config: SidecarConfig
) -> None:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > config.server.shutdown_timeout_s + float(
        command[1]
    )


def test_service_reaches_the_pods(docs: dict[str, Any], config: SidecarConfig) -> None:
    svc = docs["Service"]["spec"]
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert svc["selector"].items() <= labels.items()
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = svc["ports"]
    assert port["port"] == config.server.port and port["targetPort"] == "http"


def test_hpa_and_pdb_target_the_deployment(docs: dict[str, Any]) -> None:
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": docs["Deployment"]["metadata"]["name"],
    }
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    pdb = docs["PodDisruptionBudget"]["spec"]
    assert pdb["selector"] == docs["Deployment"]["spec"]["selector"]
    assert pdb["minAvailable"] < hpa["minReplicas"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    every = [*MANIFESTS, *OPTIONAL]
    proc = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", version, *map(str, every)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" passed ") == len(every), proc.stdout


#: What the sidecar intercepts (sidecar/routes.py) and what it passes through.
SEARCH_PATHS = ["/_search", "/logs-1/_search", "/_msearch", "/a,b/_msearch", "/_all/_search"]
OTHER_PATHS = [
    "/_search/scroll",
    "/_search/template",
    "/_msearch/template",
    "/logs-1/_search_shards",
    "/logs-1/_searchable",
    "/_bulk",
    "/logs-1/_doc/1",
    "/_cat/indices",
    "/logs-1/_count",
    "/a/b/_search",
    "/",
]


def test_the_split_front_ingress_sends_searches_to_the_sidecar_and_the_rest_to_es(
    docs: dict[str, Any], config: SidecarConfig
) -> None:
    (ingress,) = load_all_yaml(SPLIT_FRONT)
    assert ingress["kind"] == "Ingress" and ingress["spec"]["ingressClassName"] == "nginx"
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "use-regex"] == "true"
    # Streaming both ways, and no body cap below ES's own.
    assert annotations[prefix + "proxy-request-buffering"] == "off"
    assert annotations[prefix + "proxy-buffering"] == "off"
    assert annotations[prefix + "proxy-body-size"] == "0"
    assert annotations[prefix + "proxy-http-version"] == "1.1"
    (rule,) = ingress["spec"]["rules"]
    search, rest = rule["http"]["paths"]
    # The sidecar's Service, on its named port.
    service = docs["Service"]
    backend = search["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"] == {"name": service["spec"]["ports"][0]["name"]}
    # Everything else: the ES the sidecar itself talks to.
    es = urlsplit(config.es.url)
    assert rest["path"] == "/" and rest["pathType"] == "Prefix"
    assert rest["backend"]["service"] == {"name": es.hostname, "port": {"number": es.port}}
    # ingress-nginx: `location ~* "^<path>"`, the longest regex first.
    pattern = re.compile("^" + search["path"], re.IGNORECASE)
    assert search["pathType"] == "ImplementationSpecific"
    assert [p for p in SEARCH_PATHS if not pattern.match(p)] == []
    assert [p for p in OTHER_PATHS if pattern.match(p)] == []
