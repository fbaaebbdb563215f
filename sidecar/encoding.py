"""Content-Encoding both ways, bounded: request bodies the sidecar must read, and ES answers
it must parse and send back encoded as ES encoded them."""

from __future__ import annotations

import zlib

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class TooLarge(Exception):
    """The decoded body would be larger than the limit."""


def readable(encoding: str | None) -> bool:
    return not encoding or encoding.strip().lower() in ("identity", *_WBITS)


def decode(data: bytes, encoding: str | None, limit: int) -> bytes:
    """``data`` without its ``encoding`` (one that :func:`readable` accepts), at most
    ``limit`` bytes of it. Raises ``zlib.error`` for a corrupt body, TooLarge past the limit."""
    wbits = _WBITS.get((encoding or "").strip().lower())
    if wbits is None:
        return data
    out = zlib.decompressobj(wbits).decompress(data, limit + 1)
    if len(out) > limit:
        raise TooLarge
    return out


def encode(data: bytes, encoding: str | None) -> bytes:
    """``data`` in ``encoding`` again (gzip or deflate), as ES had sent it."""
    wbits = _WBITS.get((encoding or "").strip().lower())
    if wbits is None:
        return data
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()
