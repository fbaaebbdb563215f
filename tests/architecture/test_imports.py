"""The layering the README describes, checked from the source: no import cycles in the
service, the service never imports dev tools or tests, and the lower layers never reach up.

Imports are read from the AST (module level and inside functions alike), so a lazy import
cannot hide a cycle or a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ("sidecar", "es_integration")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _imports(name: str, path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            for alias in node.names:
                yield f"{module}.{alias.name}"


def _graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    known: dict[str, Path] = {}
    for package in packages:
        known.update(_modules(package))
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        graph[name] = {m for m in _imports(name, path) if m in known and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _is_package_init(graph: dict[str, set[str]], a: str, b: str) -> bool:
    # ``pkg/__init__.py`` re-exporting ``pkg.mod`` is not a dependency of ``pkg.mod`` on it.
    return b.startswith(a + ".")


def test_the_service_has_no_import_cycles() -> None:
    graph = _graph(SERVICE)
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not _is_package_init(graph, name, d)}
    assert _cycle(graph) is None


def test_the_service_never_imports_dev_tools_or_tests() -> None:
    offenders = []
    for package in SERVICE:
        for name, path in _modules(package).items():
            for module in _imports(name, path):
                if module.split(".")[0] in ("devtools", "tests"):
                    offenders.append(f"{name} imports {module}")
    assert offenders == []


#: What each lower layer of the service may not import (it sits below them).
FORBIDDEN = {
    "sidecar.scoring": (
        "sidecar.rerank",
        "sidecar.handlers",
        "sidecar.upstream",
        "sidecar.http",
        "sidecar.admission",
        "sidecar.search",
    ),
    "sidecar.admission": (
        "sidecar.rerank",
        "sidecar.handlers",
        "sidecar.upstream",
        "sidecar.http",
        "sidecar.search",
    ),
    "sidecar.rerank": ("sidecar.handlers", "sidecar.upstream", "sidecar.http", "sidecar.search"),
    "sidecar.search": ("sidecar.handlers",),
    "sidecar.upstream": ("sidecar.handlers", "sidecar.rerank.step", "sidecar.rerank.engine"),
    "sidecar.config": ("sidecar.handlers", "sidecar.rerank", "sidecar.scoring", "sidecar.upstream"),
}


def test_lower_layers_do_not_reach_up() -> None:
    offenders = []
    for name, path in _modules("sidecar").items():
        for layer, banned in FORBIDDEN.items():
            if name != layer and not name.startswith(layer + "."):
                continue
            offenders += [
                f"{name} imports {m}" for m in _imports(name, path) if m.startswith(banned)
            ]
    assert offenders == []


def test_the_checker_sees_cycles_and_edges() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    graph = _graph(SERVICE)
    # The search path: handler -> search service -> step and ES client; step -> plan and
    # the admission machinery.
    assert {"sidecar.keys", "sidecar.search.call"} <= graph["sidecar.handlers.search"]
    assert "sidecar.search.service" in graph["sidecar.keys"]
    assert {"sidecar.rerank.step", "sidecar.upstream"} <= graph["sidecar.search.service"]
    assert "sidecar.rerank.plan" in graph["sidecar.rerank.step"]
    assert "sidecar.admission.controller" in graph["sidecar.rerank.engine"]
