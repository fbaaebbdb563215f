"""Long documents as overlapping token windows (``model.long_documents: chunk``)."""

from __future__ import annotations

from collections.abc import Sequence


def windows(ids: list[int], size: int, overlap: int, limit: int) -> list[list[int]]:
    """At most ``limit`` windows of ``size`` tokens, each sharing ``overlap`` with the last.

    Text past the last allowed window is dropped, as truncation would drop it.
    """
    if len(ids) <= size:
        return [ids]
    step = size - min(overlap, size - 1)
    out: list[list[int]] = []
    for start in range(0, len(ids), step):
        out.append(ids[start : start + size])
        if start + size >= len(ids) or len(out) == limit:
            break
    return out


def first_chunks(owners: Sequence[int], limit: int) -> list[int]:
    """Positions to keep so that no owner has more than ``limit`` chunks.

    For tokenizers that emit every overflow window themselves (``return_overflowing_tokens``).
    """
    seen: dict[int, int] = {}
    keep: list[int] = []
    for position, owner in enumerate(owners):
        count = seen.get(owner, 0)
        if count < limit:
            keep.append(position)
        seen[owner] = count + 1
    return keep
