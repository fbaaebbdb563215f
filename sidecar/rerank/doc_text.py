"""Turn an ES hit's ``_source`` into the text the model reads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"{([^{}]+)}")


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

    def text(self, source: Any) -> str:
        if self.template is not None:
            return PLACEHOLDER.sub(
                lambda m: as_text(lookup(source, m.group(1).strip()), self.max_chars),
                self.template,
            ).strip()
        parts = [as_text(lookup(source, f), self.max_chars) for f in self.fields]
        return "\n".join(p for p in parts if p).strip()
