"""Elasticsearch ``_source`` filtering, applied by the sidecar itself.

When a client's ``_source`` filter would hide the fields the reranker reads (``_source:
false``, includes that leave them out, excludes that take them, ``stored_fields`` without
``_source``), the sidecar asks ES for the client's view plus those text fields
(:meth:`SourceFilter.widened`) and applies the client's filter afterwards, so the client gets
exactly what it asked for. Semantics follow ES: ``false`` drops ``_source``; ``includes``
(empty = everything) then ``excludes``; patterns are wildcards on dotted paths, and a pattern
naming an object selects everything below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any


@dataclass(frozen=True)
class SourceFilter:
    enabled: bool = True
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()

    @property
    def is_identity(self) -> bool:
        return self.enabled and not self.includes and not self.excludes

    def widened(self, needed: tuple[str, ...]) -> SourceFilter:
        """A filter that keeps what this one keeps and the ``needed`` fields too."""
        if not self.enabled:
            return SourceFilter(includes=needed)
        excludes = tuple(p for p in self.excludes if not any(_hides(p, f) for f in needed))
        if not self.includes:
            return SourceFilter(excludes=excludes)
        includes = tuple(dict.fromkeys(self.includes + needed))
        return SourceFilter(includes=includes, excludes=excludes)

    def as_spec(self) -> Any:
        """As a body's ``_source`` value."""
        if not self.enabled:
            return False
        if self.is_identity:
            return True
        spec: dict[str, list[str]] = {}
        if self.includes:
            spec["includes"] = list(self.includes)
        if self.excludes:
            spec["excludes"] = list(self.excludes)
        return spec

    def as_params(self) -> list[tuple[str, str]]:
        """As URL parameters (for a search without a body)."""
        if not self.enabled:
            return [("_source", "false")]
        out = []
        if self.includes:
            out.append(("_source_includes", ",".join(self.includes)))
        if self.excludes:
            out.append(("_source_excludes", ",".join(self.excludes)))
        return out or [("_source", "true")]


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _hides(exclude: str, path: str) -> bool:
    """Whether the exclude pattern takes ``path`` (or an object above it) away."""
    return any(fnmatchcase(p, exclude) for p in _prefixes(path))


def hides_any(flt: SourceFilter, needed: tuple[str, ...]) -> bool:
    """Whether ``flt`` would hide any of the ``needed`` fields (entirely or in part)."""
    if not needed or flt.is_identity:
        return False
    if not flt.enabled:
        return True
    for path in needed:
        if any(_hides(p, path) for p in flt.excludes):
            return True
        if flt.includes and not any(
            fnmatchcase(prefix, p) for prefix in _prefixes(path) for p in flt.includes
        ):
            return True
    return False


def _as_patterns(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return tuple(p for p in value.split(",") if p) if "," in value else (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def parse_source_spec(spec: Any) -> SourceFilter | None:
    """The body's ``_source`` value as a filter; None when the shape is not understood."""
    if spec is None or spec is True:
        return SourceFilter()
    if spec is False:
        return SourceFilter(enabled=False)
    patterns = _as_patterns(spec)
    if patterns is not None:
        return SourceFilter(includes=patterns)
    if isinstance(spec, dict):
        inc = _as_patterns(spec.get("includes", spec.get("include", [])))
        exc = _as_patterns(spec.get("excludes", spec.get("exclude", [])))
        if inc is None or exc is None:
            return None
        return SourceFilter(includes=inc, excludes=exc)
    return None


def parse_source_params(
    source: str | None, includes: str | None, excludes: str | None
) -> SourceFilter | None:
    """The URL parameters ``_source``, ``_source_includes`` and ``_source_excludes``."""
    if source is None and includes is None and excludes is None:
        return None
    if source is not None and source.lower() in ("false", "0"):
        return SourceFilter(enabled=False)
    inc: tuple[str, ...] = ()
    if source is not None and source.lower() not in ("true", "1", ""):
        inc = _as_patterns(source) or ()
    if includes:
        inc = inc + (_as_patterns(includes) or ())
    exc = _as_patterns(excludes) if excludes else ()
    return SourceFilter(includes=inc, excludes=exc or ())


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(path, p) for p in patterns)


def _under(path: str, patterns: tuple[str, ...]) -> bool:
    """True when ``path`` is an object an include pattern may reach into."""
    return any(p.startswith(path + ".") or p.startswith("*") for p in patterns)


def _filter(node: dict[str, Any], prefix: str, flt: SourceFilter, included: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if flt.excludes and _matches(path, flt.excludes):
            continue
        hit = included or not flt.includes or _matches(path, flt.includes)
        if isinstance(value, dict):
            if hit or _under(path, flt.includes):
                child = _filter(value, path + ".", flt, hit)
                if child or hit:
                    out[key] = child
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            if hit or _under(path, flt.includes):
                items = [
                    _filter(v, path + ".", flt, hit) if isinstance(v, dict) else v
                    for v in value
                    if hit or isinstance(v, dict)
                ]
                items = [v for v in items if v != {} or hit]
                if items or hit:
                    out[key] = items
        elif hit:
            out[key] = value
    return out


def apply_source_filter(hit: dict[str, Any], flt: SourceFilter) -> None:
    """Filter ``hit['_source']`` in place the way ES would have."""
    if flt.is_identity or "_source" not in hit:
        return
    if not flt.enabled:
        del hit["_source"]
        return
    source = hit["_source"]
    if isinstance(source, dict):
        hit["_source"] = _filter(source, "", flt, False)
