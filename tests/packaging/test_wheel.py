"""The wheel holds the service and its shipped dev runtime only: ``sidecar/`` and
``es_integration/`` (with the sample corpus), never ``devtools/`` or ``tests/``, and none of
what it ships imports the dev tools or their dependencies. The images COPY the same paths."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

#: What setuptools must leave out even though it sits beside the packages.
UNSHIPPED = ("devtools", "tests")
#: What es_integration/ held before the dev tools moved to devtools/.
FORMER_DEV_TOOLS = {
    *("eval", "eval_data", "eval_report", "eval_stats", "metrics", "soak", "faults", "loadgen"),
    *("bench", "bench_models", "bench_proxy", "bench_servers"),
}
#: Imported by devtools/ and tests/ only; in the `dev` extra, not in the runtime dependencies.
DEV_ONLY = ("elasticsearch", "numpy", "tqdm")
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", ".*_cache", ".local-es"
)


@pytest.fixture(scope="module")
def wheel(repo_root_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """Build the wheel from a copy of the checkout (building in place would leave build/ and
    egg-info behind), with the venv's own setuptools, offline."""
    src = tmp_path_factory.mktemp("src") / "checkout"
    shutil.copytree(repo_root_dir, src, ignore=SKIP)
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--no-index", "--quiet", "-w", str(out), str(src)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("rerank_sidecar-*.whl")
    return zipfile.ZipFile(built)


@pytest.fixture(scope="module")
def repo_root_dir() -> Path:
    return Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_service_and_its_dev_runtime_only(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    print("\n".join(names))
    tops = {name.split("/")[0] for name in names}
    (dist_info,) = [t for t in tops if t.endswith(".dist-info")]
    assert tops == {"sidecar", "es_integration", dist_info}
    assert not [n for n in names if n.split("/")[0] in UNSHIPPED or n.endswith(".pyc")]
    assert "es_integration/data/sample_corpus.jsonl" in names
    assert "es_integration/data/sample_queries.jsonl" in names
    assert {"sidecar/openapi.yaml", "sidecar/static/index.html"} <= set(names)
    runtime = {Path(n).stem for n in names if n.startswith("es_integration/") and n.endswith(".py")}
    assert {"__main__", "corpus", "es_rest", "local_es", "sidecar_proc"} <= runtime
    assert not runtime & FORMER_DEV_TOOLS


def _imported(source: str) -> set[str]:
    tops: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            tops.add(node.module.split(".")[0])
    return tops


def test_nothing_shipped_imports_the_dev_tools_or_their_dependencies(
    wheel: zipfile.ZipFile,
) -> None:
    offending = {
        name: sorted(_imported(wheel.read(name).decode()) & {*UNSHIPPED, *DEV_ONLY})
        for name in wheel.namelist()
        if name.endswith(".py")
    }
    assert {name: mods for name, mods in offending.items() if mods} == {}


def test_dev_only_dependencies_are_not_runtime_requirements(wheel: zipfile.ZipFile) -> None:
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(wheel.read(meta).decode()).get_all("Requires-Dist") or []
    runtime = [r for r in requires if "extra ==" not in r]
    for dist in DEV_ONLY:
        assert not [r for r in runtime if re.match(rf"{dist}\b", r)], runtime
        assert [r for r in requires if re.match(rf"{dist}\b", r) and 'extra == "dev"' in r]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_the_images_copy_the_service_only(repo_root_dir: Path, dockerfile: str) -> None:
    text = (repo_root_dir / "docker" / dockerfile).read_text()
    sources, mounted = set(), set()
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources |= set(words[1:-1])
        # A RUN's bind mount reads the build context too (the builder stage's torch wheels).
        for mount in re.findall(r"--mount=(\S+)", line):
            opts = dict(o.partition("=")[::2] for o in mount.split(","))
            if opts.get("type") == "bind" and "from" not in opts:
                mounted.add(opts["source"])
    assert sources == {
        "pyproject.toml",
        "README.md",
        "sidecar",
        "es_integration",
        "docker/config.yaml",
        "docker/healthcheck.py",
    }
    ignore = (repo_root_dir / "docker" / f"{dockerfile}.dockerignore").read_text().splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert "*" in ignore and allowed == sources | mounted
    # Only the builder stage mounts anything: the final image copies the service alone.
    assert mounted <= {"docker/wheels"}
