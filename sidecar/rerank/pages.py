"""Pages that agree: the order a search's first page served, continued by its later pages.

The first page of a reranked search (``from: 0``) keeps the order it served: which hits its
window held (a digest of their index and id, in ES's order), how many of them were reranked
(K) and their scores; or, when it was served in ES order (the model could not help in time,
or was not loaded), that too. A later page of the same search (``SearchPlan.search_key``:
the same index, body and parameters but ``from`` and ``size``), on any replica, serves
exactly that order: the stored scores on the same hits make the same permutation, whatever
that replica could score now, and no model is asked. Only where ES's window has changed
since (a document added, deleted or moved), or nothing is kept, is a later page scored as a
first page would be, and its order kept for the pages after it.

A first page asked again is scored again (the score cache makes that cheap) and its order
replaces the one kept.

The orders live in this replica's memory (bounded in bytes, ``rerank.pages.ttl_s``) and,
with ``shared.url``, in Redis, which is asked first: another replica may have served a newer
first page. With ``rerank.cache.scope: identity`` the caller's identity is in the key.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from sidecar.config import SidecarConfig
from sidecar.reasons import FALLBACK, Reason
from sidecar.rerank.engine import Doc, ScoredWindow
from sidecar.rerank.identity import CALLER, digest_parts
from sidecar.rerank.outcome import CACHED, Outcome
from sidecar.shared import SharedStore

#: Why a first page may be served in ES order that a later page must continue: the model
#: could not help then, and might now.
KEPT_IN_ES_ORDER = frozenset(FALLBACK | {Reason.MODEL_NOT_READY})
#: What an order costs in memory beyond its encoded bytes (objects, cache links).
ORDER_OVERHEAD_BYTES = 256
_VERSION = b"\x01"
_HEAD = struct.Struct(">16sIB")


def window_digest(docs: Sequence[Doc]) -> bytes:
    """The window's hits (index and id) in ES's order."""
    h = hashlib.blake2b(digest_size=16)
    h.update(len(docs).to_bytes(4, "big"))
    for doc in docs:
        for part in (doc.index, doc.id):
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(4, "big"))
            h.update(data)
    return h.digest()


@dataclass(frozen=True)
class ServedOrder:
    """How a search's window was served: its hits (``window``, a digest), their count, and
    the scores of the first K reranked; no scores: in ES order, for ``reason``."""

    window: bytes
    size: int
    scores: tuple[float, ...]
    reason: Reason | None = None

    def encode(self) -> bytes:
        reason = (self.reason or "").encode()
        head = _HEAD.pack(self.window, self.size, len(reason))
        scores = struct.pack(f">{len(self.scores)}d", *self.scores)
        return _VERSION + head + reason + scores

    @classmethod
    def decode(cls, data: bytes | None) -> ServedOrder | None:
        """An order as the shared store holds it; None for anything else."""
        if not data or data[:1] != _VERSION or len(data) < 1 + _HEAD.size:
            return None
        window, size, length = _HEAD.unpack_from(data, 1)
        start = 1 + _HEAD.size + length
        rest = data[start:]
        if len(rest) % 8 or len(rest) // 8 > size:
            return None
        try:
            reason = Reason(data[1 + _HEAD.size : start].decode()) if length else None
        except (ValueError, UnicodeDecodeError):
            return None
        scores = struct.unpack(f">{len(rest) // 8}d", rest)
        if not all(math.isfinite(s) for s in scores) or (not scores and reason is None):
            return None
        return cls(window, size, scores, reason)

    @property
    def cost(self) -> int:
        """Bytes of memory it is charged."""
        return 1 + _HEAD.size + 32 + 8 * len(self.scores) + ORDER_OVERHEAD_BYTES

    def scored(self) -> ScoredWindow:
        """The window as its first page had it: the same scores (no model), or ES order."""
        if not self.scores:
            return ScoredWindow(None, Outcome.kept(Reason.PAGE_ORDER))
        k = len(self.scores)
        outcome = CACHED if k == self.size else Outcome("cached", window=k)
        return ScoredWindow(list(self.scores), outcome)


@dataclass
class OrderStats:
    continued: int = 0
    kept: int = 0


class PageOrders:
    def __init__(
        self,
        ttl_s: float,
        max_bytes: int,
        *,
        shared: SharedStore | None = None,
        identity_scope: bool = False,
    ) -> None:
        self.ttl_s = ttl_s
        self.shared = shared
        self.identity_scope = identity_scope
        self._local: TTLCache[str, ServedOrder] = TTLCache(
            maxsize=max_bytes, ttl=ttl_s, getsizeof=lambda order: order.cost
        )
        self.stats = OrderStats()

    @classmethod
    def from_config(cls, config: SidecarConfig, shared: SharedStore | None) -> PageOrders:
        return cls(
            config.rerank.pages.ttl_s,
            config.tuning.limits.page_orders_bytes,
            shared=shared,
            identity_scope=config.rerank.cache.scope == "identity",
        )

    def key(self, search_key: str) -> str:
        """The order's key ("" when the search has none): with an identity-scoped cache,
        the caller's identity is in it."""
        if not search_key:
            return ""
        return digest_parts([search_key, CALLER.get() if self.identity_scope else ""])

    async def find(self, key: str, docs: Sequence[Doc]) -> ServedOrder | None:
        """The order kept for ``key`` when it was served on this same window."""
        order = None
        if self.shared is not None:
            raw = await self.shared.get(self.shared.key("o", key))
            order = ServedOrder.decode(raw)
        if order is None:
            order = self._local.get(key)
        if order is None or order.size != len(docs) or order.window != window_digest(docs):
            return None
        self.stats.continued += 1
        return order

    def keep(self, key: str, docs: Sequence[Doc], scored: ScoredWindow) -> None:
        """Keep the order a page served (an order in ES order only for a reason that may
        not hold for a later page)."""
        reason = scored.outcome.reason
        if scored.scores is None and reason not in KEPT_IN_ES_ORDER:
            return
        order = ServedOrder(window_digest(docs), len(docs), tuple(scored.scores or ()), reason)
        if order.cost <= self._local.maxsize:
            self._local[key] = order
        if self.shared is not None:
            self.shared.put(self.shared.key("o", key), order.encode(), self.ttl_s)
        self.stats.kept += 1

    def __len__(self) -> int:
        return len(self._local)

    def clear(self) -> None:
        self._local.clear()
