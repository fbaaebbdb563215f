"""Bounded TTL caches (cachetools). Touched from the event-loop thread only: cachetools is
not thread-safe, and the model worker never sees these objects."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cachetools import TTLCache

ScoreKey = tuple[str, str, str, str, str, str]
#: Seconds from an arbitrary start; entries expire ``ttl_s`` after they were stored.
Timer = Callable[[], float]


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class ScoreCache:
    """Scores per (model, instruction, query, index, document id, document text hash).

    The text hash means an updated document is rescored even under the same id, and ES is
    still queried on every request, so deletes and document-level security always apply.
    """

    def __init__(
        self, max_entries: int, ttl_s: float, enabled: bool = True, timer: Timer = time.monotonic
    ) -> None:
        self.enabled = enabled
        self._cache: TTLCache[ScoreKey, float] = TTLCache(
            maxsize=max_entries, ttl=ttl_s, timer=timer
        )
        self.stats = CacheStats()

    @staticmethod
    def key(
        model: str, instruction: str, query: str, index: str, doc_id: str, text: str
    ) -> ScoreKey:
        return (model, instruction, query, index, doc_id, text_hash(text))

    def get_many(self, keys: Sequence[ScoreKey]) -> list[float | None]:
        if not self.enabled:
            return [None] * len(keys)
        out = [self._cache.get(k) for k in keys]
        hits = sum(v is not None for v in out)
        self.stats.hits += hits
        self.stats.misses += len(keys) - hits
        return out

    def put_many(self, keys: Sequence[ScoreKey], scores: Sequence[float]) -> None:
        if not self.enabled:
            return
        for k, s in zip(keys, scores, strict=True):
            self._cache[k] = s

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def maxsize(self) -> int:
        return int(self._cache.maxsize)

    def clear(self) -> None:
        self._cache.clear()


@dataclass(frozen=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class ResponseCache:
    """Whole reranked responses. The key must cover who asked (a hash of Authorization)
    and exactly what (method, path, query string and body), so users with different
    document-level visibility never share an entry."""

    def __init__(
        self, max_entries: int, ttl_s: float, enabled: bool, timer: Timer = time.monotonic
    ) -> None:
        self.enabled = enabled
        self._cache: TTLCache[str, CachedResponse] = TTLCache(
            maxsize=max_entries, ttl=ttl_s, timer=timer
        )
        self.stats = CacheStats()

    @staticmethod
    def key(authorization: str, method: str, path_qs: str, body: bytes, mode: str) -> str:
        h = hashlib.sha256()
        for part in (authorization.encode(), method.encode(), path_qs.encode(), mode.encode()):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        h.update(body)
        return h.hexdigest()

    def get(self, key: str) -> CachedResponse | None:
        if not self.enabled:
            return None
        value = self._cache.get(key)
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    def put(self, key: str, value: CachedResponse) -> None:
        if self.enabled:
            self._cache[key] = value

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()
