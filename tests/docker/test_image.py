"""The CPU images, built by `make image` and run with podman against the local ES.

Three containers run side by side (their waits overlap):

* ``served``: rerank-sidecar:cpu-bundled as shipped (its own user), with a read-only root
  filesystem, every capability dropped and no new privileges: health, readiness, a search
  reranked by the bundled model, the HEALTHCHECK, the process's uid, JSON-only logs, and
  SIGTERM while idle;
* ``openshift``: the same image as an arbitrary uid in group 0, as OpenShift's restricted
  policy runs it: the model cache and $HOME must be writable;
* ``loading``: rerank-sidecar:cpu with the default model and a hub that cannot be reached
  (an unresolvable name): readiness says the hub could not be reached, and SIGTERM while
  the next load attempt runs stops the container within the grace period.

Where podman cannot run containers the whole module is skipped with the reason in one line.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from es_integration.local_es import free_port
from tests.conftest import ESTarget
from tests.docker import podman as pm
from tests.docker.helpers import IMAGE_HEALTHCHECK_PATH, IMAGE_UID
from tests.support.search import GENEROUS_BUDGET_MS, multi_match

pytestmark = pytest.mark.slow

#: A hub address that can never resolve (RFC 2606): a real DNS failure, no traffic.
UNREACHABLE_HUB = "http://hub.invalid"
#: An OpenShift-style uid: none of the image's users.
ARBITRARY_UID = 1000650000

_REASON = pm.unavailable_reason()
if _REASON is not None:
    pytest.skip(f"image tests not run: {_REASON}", allow_module_level=True)


@pytest.fixture(scope="module")
def images() -> None:
    pm.build_images()


def _sidecar_env(es: ESTarget) -> dict[str, str]:
    return {
        "RERANK_SIDECAR__ES__URL": es.url,
        "RERANK_SIDECAR__MODEL__NAME": pm.BUNDLED_MODEL,
        "RERANK_SIDECAR__RERANK__BUDGET_MS": str(GENEROUS_BUDGET_MS),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="module")
def containers(images: None, es: ESTarget, sample_index: str) -> Iterator[dict[str, pm.Container]]:
    started: dict[str, pm.Container] = {}
    try:
        # First the one that waits on the network, then the two that load the model.
        started["loading"] = pm.run_container(
            pm.PLAIN,
            free_port(),
            env={
                "RERANK_SIDECAR__ES__URL": es.url,
                "HF_HUB_OFFLINE": "0",
                "HF_ENDPOINT": UNREACHABLE_HUB,
            },
        )
        started["served"] = pm.run_container(
            pm.BUNDLED,
            free_port(),
            "--read-only",
            # podman's --read-only also mounts tmpfs on /var/tmp and /run unless told not to;
            # Docker's does not. The one writable path the sidecar needs besides /models is a
            # temporary directory (torch writes there as it imports): as with Docker's
            # --tmpfs /tmp and the Kubernetes example's emptyDir.
            "--read-only-tmpfs=false",
            "--tmpfs=/tmp",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            env=_sidecar_env(es),
        )
        started["openshift"] = pm.run_container(
            pm.BUNDLED, free_port(), f"--user={ARBITRARY_UID}:0", env=_sidecar_env(es)
        )
        yield started
    finally:
        for container in started.values():
            pm.remove(container)


@pytest.fixture(scope="module")
def served(containers: dict[str, pm.Container]) -> pm.Container:
    containers["served"].wait_ready()
    return containers["served"]


@pytest.mark.parametrize("image", [pm.PLAIN, pm.BUNDLED])
def test_both_images_keep_their_healthcheck_and_user(images: None, image: str) -> None:
    # Built in the docker format: the OCI format has no HEALTHCHECK and podman drops it.
    fmt = "{{json .Config.Healthcheck.Test}} {{.Config.User}}"
    test, user = pm.podman("image", "inspect", "--format", fmt, image).stdout.split()
    assert test == f'["CMD","python","{IMAGE_HEALTHCHECK_PATH}"]'
    assert user == f"{IMAGE_UID}:{IMAGE_UID}"


def test_health_and_readiness(served: pm.Container) -> None:
    status, _, body = pm.http(f"{served.url}/_sidecar/health")
    assert status == 200, body
    status, _, body = pm.http(f"{served.url}/_sidecar/ready")
    assert status == 200 and body["reranking"] is True, body
    assert body["es"]["reachable"] is True
    assert body["model"]["name"] == pm.BUNDLED_MODEL and body["model"]["warm"] is True


def test_a_search_is_reranked_by_the_bundled_model(served: pm.Container, sample_index: str) -> None:
    body = multi_match("library card not working", size=3)
    status, headers, answer = pm.http(f"{served.url}/{sample_index}/_search", body)
    assert status == 200, answer
    assert headers["X-Rerank"].startswith("applied"), headers
    assert len(answer["hits"]["hits"]) == 3


def test_the_healthcheck_says_healthy(served: pm.Container) -> None:
    # podman runs HEALTHCHECKs from systemd timers; without systemd it runs one on demand.
    proc = pm.podman("healthcheck", "run", served.name, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert served.state("Health.Status") == "healthy"


def test_runs_as_its_own_uid_with_no_capabilities(served: pm.Container) -> None:
    status = served.pid1_status()
    assert status["Uid"].split() == [str(IMAGE_UID)] * 4
    assert status["Gid"].split() == [str(IMAGE_UID)] * 4
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"


def test_root_filesystem_is_read_only_and_the_model_cache_writable(served: pm.Container) -> None:
    for path in ("/etc/probe", "/opt/venv/probe", "/var/tmp/probe", "/home/sidecar/probe"):
        proc = served.exec("touch", path)
        assert proc.returncode != 0 and "Read-only file system" in proc.stderr, (path, proc)
    for path in ("/models/huggingface/probe", "/tmp/probe"):
        proc = served.exec("touch", path)
        assert proc.returncode == 0, (path, proc.stderr)


def test_an_arbitrary_uid_in_group_0_can_write_the_model_cache(
    containers: dict[str, pm.Container], sample_index: str
) -> None:
    container = containers["openshift"]
    container.wait_ready()
    status = container.pid1_status()
    assert status["Uid"].split()[0] == str(ARBITRARY_UID) and status["Gid"].split()[0] == "0"
    # What a download does: a directory and a file in the cache; $HOME for the libraries.
    script = "mkdir -p $HF_HOME/hub/probe && touch $HF_HOME/hub/probe/file $HOME/probe"
    proc = container.exec("sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    body = multi_match("library card not working", size=3)
    status_code, headers, answer = pm.http(f"{container.url}/{sample_index}/_search", body)
    assert status_code == 200 and headers["X-Rerank"].startswith("applied"), (headers, answer)


def test_the_log_is_json_lines_only(served: pm.Container) -> None:
    records = pm.json_records(served.logs())
    assert any(r["logger"] == "sidecar.models" and " ready" in r["msg"] for r in records)
    assert not any("Loading weights" in r["msg"] for r in records)


def test_sigterm_when_idle_stops_cleanly(served: pm.Container) -> None:
    assert served.stop(pm.compose_grace_s()) == 0
    records = pm.json_records(served.logs())
    assert records[-1]["msg"] == "stopped", records[-3:]


def test_an_unreachable_hub_is_named_and_sigterm_during_a_load_stops_in_time(
    containers: dict[str, pm.Container],
) -> None:
    container = containers["loading"]
    failed = False
    for record in container.follow():
        if record["logger"] == "sidecar" and record["msg"].startswith("model not loaded"):
            failed = True
            _, _, body = pm.http(f"{container.url}/_sidecar/ready")
            refused = body["model"]["refused"]
            assert f"the Hugging Face hub ({UNREACHABLE_HUB}) could not be reached" in refused
            assert "no config.json or modules.json" not in refused
            assert body["model"]["load_failures"] >= 1
        # The next attempt is under way: huggingface_hub retries the hub again.
        elif failed and record["logger"].startswith("huggingface_hub"):
            break
    assert failed
    assert container.stop(pm.compose_grace_s()) == 0
    records = pm.json_records(container.logs())
    last = [r["msg"] for r in records if r["logger"] == "sidecar"][-1]
    assert last.startswith("exiting without waiting for create_scorer"), records[-3:]
