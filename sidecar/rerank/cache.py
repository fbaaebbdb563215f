"""Bounded TTL caches (cachetools). Touched from the event-loop thread only: cachetools is
not thread-safe, and the model worker never sees these objects.

Both caches are bounded in entries *and* in bytes. A score-cache key is one 16-byte digest
of everything it stands for (a 4 MiB instruction costs a key no more than a short one), so
its entries have a fixed cost; a response-cache entry is charged its body and headers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from sidecar.config import LimitsTuning, ResponseCacheConfig, ScoreCacheConfig
from sidecar.rerank.identity import CALLER, Headers, IdentityRule, digest_parts, representation

ScoreKey = bytes
#: Seconds from an arbitrary start; entries expire ``ttl_s`` after they were stored.
Timer = Callable[[], float]

#: What one score-cache entry costs in memory, measured (tests/security checks it with
#: tracemalloc): the 16-byte key, the float, and the TTL cache's own links and tables,
#: with room for the dict growing by doubling.
SCORE_ENTRY_BYTES = 400
#: What a cached response costs beyond its body and header bytes (objects, links).
RESPONSE_OVERHEAD_BYTES = 1024

#: Response headers a cache hit may replay: those that describe the representation. Every
#: other header (X-Opaque-Id, Set-Cookie, trace and request ids, Date...) belongs to the
#: request that filled the entry and is never served to anyone else.
CACHEABLE_HEADERS = frozenset(
    {"content-type", "content-encoding", "content-language", "vary", "warning", "x-elastic-product"}
)


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class ScoreCache:
    """Scores per (model, instruction, query, index, document id, document text, and, with
    ``scope: identity``, the caller's identity), all hashed into one key.

    The text is in the key, so an updated document is rescored even under the same id, and
    ES is still queried on every request, so deletes and document-level security apply.
    """

    def __init__(
        self,
        max_entries: int,
        ttl_s: float,
        enabled: bool = True,
        timer: Timer = time.monotonic,
        *,
        max_bytes: int | None = None,
        scope: str = "shared",
    ) -> None:
        self.enabled = enabled
        self.scope = scope
        entries = max_entries
        if max_bytes is not None:
            entries = max(1, min(max_entries, max_bytes // SCORE_ENTRY_BYTES))
        self._cache: TTLCache[ScoreKey, float] = TTLCache(maxsize=entries, ttl=ttl_s, timer=timer)
        self.stats = CacheStats()

    @classmethod
    def from_config(cls, config: ScoreCacheConfig, limits: LimitsTuning) -> ScoreCache:
        return cls(
            limits.score_cache_entries,
            config.ttl_s,
            config.enabled,
            max_bytes=config.max_bytes,
            scope=config.scope,
        )

    @staticmethod
    def key(
        model: str,
        instruction: str,
        query: str,
        index: str,
        doc_id: str,
        text: str,
        identity: str = "",
    ) -> ScoreKey:
        h = hashlib.blake2b(digest_size=16)
        for part in (model, instruction, query, index, doc_id, text, identity):
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
        return h.digest()

    def key_for(
        self, model: str, instruction: str, query: str, index: str, doc_id: str, text: str
    ) -> ScoreKey:
        """The key in this cache's scope: with ``identity``, the caller's digest is in it."""
        identity = CALLER.get() if self.scope == "identity" else ""
        return self.key(model, instruction, query, index, doc_id, text, identity)

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

    @property
    def size(self) -> int:
        return (
            len(self.body) + sum(len(n) + len(v) for n, v in self.headers) + RESPONSE_OVERHEAD_BYTES
        )


def cacheable_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((n, v) for n, v in headers if n.lower() in CACHEABLE_HEADERS)


class ResponseCache:
    """Whole reranked responses. The key covers who asked (every identity header), how the
    answer is represented (Accept, Accept-Encoding, Content-Type) and exactly what was asked
    (method, path, query string, body, mode), so users with different document-level
    visibility never share an entry and nobody gets an encoding they did not ask for."""

    def __init__(
        self,
        max_entries: int,
        ttl_s: float,
        enabled: bool,
        timer: Timer = time.monotonic,
        *,
        max_bytes: int = 128 * 1024 * 1024,
        max_entry_bytes: int = 4 * 1024 * 1024,
        identity: IdentityRule | None = None,
    ) -> None:
        self.enabled = enabled
        self.identity = identity or IdentityRule()
        self.max_entry_bytes = max_entry_bytes
        # Each entry is charged at least an equal share of the bytes, so the byte bound
        # also keeps the count at or under max_entries.
        self._floor = max(1, -(-max_bytes // max_entries))
        self._cache: TTLCache[str, CachedResponse] = TTLCache(
            maxsize=max_bytes, ttl=ttl_s, timer=timer, getsizeof=self._charge
        )
        self.stats = CacheStats()

    @classmethod
    def from_config(
        cls, config: ResponseCacheConfig, extra_identity: Sequence[str], limits: LimitsTuning
    ) -> ResponseCache:
        return cls(
            limits.response_cache_entries,
            config.ttl_s,
            config.enabled,
            max_bytes=config.max_bytes,
            max_entry_bytes=limits.response_cache_entry_bytes,
            identity=IdentityRule(extra_identity),
        )

    def _charge(self, value: CachedResponse) -> int:
        return max(value.size, self._floor)

    def key(self, headers: Headers, method: str, path_qs: str, body: bytes, mode: str) -> str:
        identity = self.identity.material(headers)
        shape = representation(headers)
        parts: list[str | bytes] = [str(len(identity))]
        parts += [p for item in identity for p in item]
        parts.append(str(len(shape)))
        parts += [p for item in shape for p in item]
        parts += [method, path_qs, mode, body]
        return digest_parts(parts)

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
        """Store ``value`` without its per-request headers; one larger than
        ``max_entry_bytes`` is not stored."""
        if not self.enabled:
            return
        value = CachedResponse(value.status, cacheable_headers(value.headers), value.body)
        if value.size > self.max_entry_bytes or self._charge(value) > self._cache.maxsize:
            return
        self._cache[key] = value

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def bytes(self) -> int:
        return int(self._cache.currsize)

    def clear(self) -> None:
        self._cache.clear()
