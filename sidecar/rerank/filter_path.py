"""Elasticsearch's ``filter_path`` response filtering, applied by the sidecar itself.

A reranked search needs the hits' ``_id``, ``_index``, ``_score`` and text fields, which a
client's ``filter_path`` may filter away. The sidecar therefore takes ``filter_path`` off
the request, reranks the full answer, and filters it here, with ES's semantics
(``FilterPath`` and ``FilterPathBasedFilter`` in ES's x-content library, on Jackson's
filtering generator with "include path" inclusion):

* the value is a comma-separated list; a leading ``-`` makes an exclusion;
* a path is split on ``.`` (``\\.`` is a literal dot); a segment may hold ``*`` wildcards,
  and ``**`` matches any number of segments;
* an object matching an inclusion is kept whole; an object or array left empty by the
  inclusions is dropped, and scalars met on the way to a match are dropped; array elements
  are filtered with the same paths (arrays consume no segment);
* exclusions remove the matching fields; a container emptied by them is dropped, one that
  was empty to begin with is kept;
* inclusions are applied first, then exclusions; when nothing is left the answer is ``{}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

_MAX_DEPTH = 512


class _Missing:
    pass


_MISSING = _Missing()


@dataclass
class _Node:
    pattern: str = ""
    final: bool = False
    terms: dict[str, _Node] = field(default_factory=dict)
    wildcards: list[_Node] = field(default_factory=list)

    @property
    def double(self) -> bool:
        return self.pattern == "**"


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in _star(pattern)))


def _star(pattern: str) -> list[str]:
    out: list[str] = []
    for i, piece in enumerate(pattern.split("*")):
        if i:
            out.append("*")
        if piece:
            out.append(piece)
    return out


def _segments(path: str) -> list[str]:
    out, current, i = [], [], 0
    while i < len(path):
        c = path[i]
        if c == "\\" and i + 1 < len(path) and path[i + 1] == ".":
            current.append(".")
            i += 2
            continue
        if c == ".":
            out.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    out.append("".join(current))
    return out


def _compile(paths: list[str]) -> _Node | None:
    if not paths:
        return None
    # A build tree first (a path that ends at a node makes it final, and a final node takes
    # no children), then each node's children split into exact names and wildcards.
    build: dict[str, Any] = {}
    for path in paths:
        node = build
        segments = _segments(path)
        for i, seg in enumerate(segments):
            child = node.get(seg)
            if i == len(segments) - 1:
                node[seg] = True
                break
            if child is True:
                break
            if child is None:
                child = node[seg] = {}
            node = child
    return _freeze("", build)


def _freeze(pattern: str, build: dict[str, Any] | bool) -> _Node:
    node = _Node(pattern=pattern, final=build is True)
    if isinstance(build, dict):
        for name, child in build.items():
            frozen = _freeze(name, child)
            if "*" in name:
                node.wildcards.append(frozen)
            else:
                node.terms[name] = frozen
    return node


def _step(nodes: list[_Node], name: str) -> tuple[bool, list[_Node]]:
    """ES's ``FilterPath.matches`` over a set of nodes: a full match, or the nodes that
    match ``name`` so far."""
    following: list[_Node] = []
    for node in nodes:
        term = node.terms.get(name)
        if term is not None:
            if term.final:
                return True, []
            following.append(term)
        for wild in node.wildcards:
            if _glob(wild.pattern).fullmatch(name):
                if wild.final:
                    return True, []
                following.append(wild)
        if node.double:
            following.append(node)
    return False, following


def _include(value: Any, nodes: list[_Node], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return _MISSING
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            matched, following = _step(nodes, key)
            if matched:
                out[key] = child
            elif following:
                kept = _include(child, following, depth + 1)
                if kept is not _MISSING:
                    out[key] = kept
        return out if out else _MISSING
    if isinstance(value, list):
        items = [kept for v in value if (kept := _include(v, nodes, depth + 1)) is not _MISSING]
        return items if items else _MISSING
    return _MISSING


def _exclude(value: Any, nodes: list[_Node], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        filtered = False
        for key, child in value.items():
            matched, following = _step(nodes, key)
            if matched:
                filtered = True
                continue
            if following:
                kept = _exclude(child, following, depth + 1)
                if kept is _MISSING:
                    filtered = True
                    continue
                out[key] = kept
            else:
                out[key] = child
        return _MISSING if filtered and not out else out
    if isinstance(value, list):
        items: list[Any] = []
        filtered = False
        for v in value:
            kept = _exclude(v, nodes, depth + 1)
            if kept is _MISSING:
                filtered = True
            else:
                items.append(kept)
        return _MISSING if filtered and not items else items
    return value


@dataclass(frozen=True)
class FilterPath:
    includes: _Node | None
    excludes: _Node | None

    def apply(self, document: Any) -> Any:
        """``document`` as ES writes it with this ``filter_path``."""
        out = document
        if self.includes is not None:
            out = _include(out, [self.includes], 0)
        if self.excludes is not None and out is not _MISSING:
            out = _exclude(out, [self.excludes], 0)
        return {} if out is _MISSING else out

    def wants_below(self, path: tuple[str, ...]) -> bool:
        """Whether anything below ``path`` can survive the filter (for ``("hits", "hits")``:
        whether the client wants any part of the hits)."""
        if self.excludes is not None:
            nodes = [self.excludes]
            for name in path:
                matched, nodes = _step(nodes, name)
                if matched:
                    return False
                if not nodes:
                    break
        if self.includes is None:
            return True
        nodes = [self.includes]
        for name in path:
            matched, nodes = _step(nodes, name)
            if matched:
                return True
            if not nodes:
                return False
        return True


def parse_filter_path(value: str) -> FilterPath:
    """ES's ``filter_path`` parameter (``Strings.tokenizeByCommaToSet``, ``-`` excludes)."""
    includes, excludes = [], []
    for token in value.split(","):
        token = token.strip()
        if not token:
            continue
        if token.startswith("-"):
            if token[1:]:
                excludes.append(token[1:])
        else:
            includes.append(token)
    return FilterPath(_compile(includes), _compile(excludes))
