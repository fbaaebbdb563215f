"""Turn an ES hit into the text the model reads, per index configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from sidecar.config import IndexRerankConfig, RerankConfig

_PLACEHOLDER = re.compile(r"{([^{}]+)}")


def lookup(source: Any, path: str) -> Any:
    """Dotted-path lookup in ``_source``; keys with dots in them are tried first."""
    if not isinstance(source, dict):
        return None
    if path in source:
        return source[path]
    head, _, rest = path.partition(".")
    if not rest or head not in source:
        return None
    value = source[head]
    if isinstance(value, list):
        found = [lookup(v, rest) for v in value]
        flat = [f for f in found if f is not None]
        return flat or None
    return lookup(value, rest)


def as_text(value: Any, max_chars: int) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        text = "\n".join(as_text(v, max_chars) for v in value if v is not None)
    elif isinstance(value, dict):
        text = "\n".join(as_text(v, max_chars) for v in value.values())
    else:
        text = str(value)
    return text[:max_chars]


@dataclass(frozen=True)
class DocTextSpec:
    fields: tuple[str, ...]
    template: str | None
    max_chars: int
    #: True when the fields were configured, False for the default field list, of which the
    #: ones present are used.
    configured: bool

    def text(self, source: Any) -> str:
        if self.template is not None:
            return _PLACEHOLDER.sub(
                lambda m: as_text(lookup(source, m.group(1).strip()), self.max_chars),
                self.template,
            ).strip()
        parts = [as_text(lookup(source, f), self.max_chars) for f in self.fields]
        return "\n".join(p for p in parts if p).strip()

    @property
    def source_paths(self) -> tuple[str, ...]:
        if self.template is not None:
            return tuple(m.group(1).strip() for m in _PLACEHOLDER.finditer(self.template))
        return self.fields


class DocTextResolver:
    """Which :class:`DocTextSpec` applies to an index (first matching pattern wins)."""

    def __init__(self, config: RerankConfig) -> None:
        self._entries = config.indices
        self._default = DocTextSpec(
            config.default_fields, None, config.max_chars_per_field, configured=False
        )
        self._specs = {
            e.pattern: DocTextSpec(e.fields, e.template, e.max_chars_per_field, configured=True)
            for e in config.indices
        }

    def entry(self, index: str) -> IndexRerankConfig | None:
        for entry in self._entries:
            if fnmatchcase(index, entry.pattern):
                return entry
        return None

    def spec(self, index: str, fields: tuple[str, ...] | None = None) -> DocTextSpec:
        base = self._default
        entry = self.entry(index)
        if entry is not None:
            base = self._specs[entry.pattern]
        if fields:
            return DocTextSpec(fields, None, base.max_chars, configured=True)
        return base
