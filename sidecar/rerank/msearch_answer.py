"""An ``_msearch`` answer taken apart without decoding all of it.

A 300-search answer is megabytes of JSON, and at most ``rerank.load.msearch_max_reranked``
of its items are rewritten. Decoding the whole document costs the event loop far more
than everything else the sidecar does for the request (a 3 MB answer: 14 ms with orjson),
CPU the model shares. msgspec finds the items' bytes (``msgspec.Raw``) in one pass of C
without building any object (0.9 ms for the same answer); only the items being reranked
are decoded, and every other item goes back as ES wrote it, byte for byte.

Only a compact answer is taken apart: a pretty one (``?pretty``) is written again whole,
with ES's indentation, by :mod:`sidecar.rerank.render`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from sidecar.jsonutil import loads
from sidecar.rerank.render import is_pretty

_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_SPACE = b" \t\r\n"


@dataclass(frozen=True)
class MsearchAnswer:
    """ES's answer as its top-level fields (in ES's order) and ``responses`` items, each
    still the bytes ES wrote."""

    fields: dict[str, msgspec.Raw]
    items: list[msgspec.Raw]
    #: Whitespace around the document, kept as it was.
    before: bytes
    after: bytes

    @classmethod
    def split(cls, raw: bytes) -> MsearchAnswer | None:
        """The answer taken apart, or None when it is pretty or not an object with a
        ``responses`` list (the caller then decodes it whole, and judges it there)."""
        if is_pretty(raw):
            return None
        try:
            fields = _FIELDS.decode(raw)
            responses = fields.get("responses")
            if responses is None:
                return None
            items = _ITEMS.decode(responses)
        except (msgspec.DecodeError, RecursionError):
            # Nesting past msgspec's depth raises RecursionError: the whole-document path
            # judges such an answer as it did before.
            return None
        body = raw.strip(_SPACE)
        start = raw.find(body[:1])
        return cls(fields, items, raw[:start], raw[start + len(body) :])

    def item(self, i: int) -> Any:
        return loads(bytes(self.items[i]))

    def join(self, replaced: Mapping[int, bytes]) -> bytes:
        """The answer with the given items written anew and every other byte as ES sent
        it (between fields and items, compact JSON has nothing to keep)."""
        # One join over every piece: a multi-megabyte answer is copied once, not per level.
        pieces: list[bytes | msgspec.Raw] = [self.before, b"{"]
        for n, (key, value) in enumerate(self.fields.items()):
            pieces += [b"," if n else b"", orjson.dumps(key), b":"]
            if key != "responses":
                pieces.append(value)
                continue
            pieces.append(b"[")
            for i, raw in enumerate(self.items):
                pieces += [b"," if i else b"", replaced.get(i, raw)]
            pieces.append(b"]")
        pieces += [b"}", self.after]
        return b"".join(pieces)
