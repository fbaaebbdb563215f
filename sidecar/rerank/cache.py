"""Bounded TTL caches (cachetools). Touched from the event-loop thread only: cachetools is
not thread-safe, and the model worker never sees these objects.

Both caches are bounded in entries *and* in bytes. A score-cache key is one 16-byte digest
of everything it stands for (a 4 MiB instruction costs a key no more than a short one), so
its entries have a fixed cost; a response-cache entry is charged its body and headers.

With ``shared.url`` each cache has a second tier every replica shares
(:class:`~sidecar.shared.SharedStore`): a lookup that misses this replica's memory asks
Redis (one ``MGET`` per window, bounded by its own timeout) and
keeps what it finds; what is stored goes to both, Redis in the background. Redis holds
the same keys as digests (hex) and the same TTLs; when it cannot answer, the local tier
serves alone.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from sidecar.config import LimitsTuning, ResponseCacheConfig, ScoreCacheConfig
from sidecar.jsonutil import dumps, loads
from sidecar.rerank.identity import CALLER, Headers, IdentityRule, digest_parts, representation
from sidecar.shared import SharedStore

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
    #: Hits this replica's memory did not have and the shared store did (in ``hits``).
    shared_hits: int = 0


_SCORE = struct.Struct(">d")


def encode_score(score: float) -> bytes:
    return _SCORE.pack(score)


def decode_score(data: bytes | None) -> float | None:
    """A score as the shared store holds it (8 bytes, big-endian double), or None."""
    if data is None or len(data) != _SCORE.size:
        return None
    (score,) = _SCORE.unpack(data)
    return score if math.isfinite(score) else None


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
        shared: SharedStore | None = None,
    ) -> None:
        self.enabled = enabled
        self.scope = scope
        self.ttl_s = ttl_s
        self.shared = shared
        entries = max_entries
        if max_bytes is not None:
            entries = max(1, min(max_entries, max_bytes // SCORE_ENTRY_BYTES))
        self._cache: TTLCache[ScoreKey, float] = TTLCache(maxsize=entries, ttl=ttl_s, timer=timer)
        self.stats = CacheStats()

    @classmethod
    def from_config(
        cls, config: ScoreCacheConfig, limits: LimitsTuning, shared: SharedStore | None = None
    ) -> ScoreCache:
        return cls(
            limits.score_cache_entries,
            config.ttl_s,
            config.enabled,
            max_bytes=config.max_bytes,
            scope=config.scope,
            shared=shared,
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
        """This replica's memory only."""
        if not self.enabled:
            return [None] * len(keys)
        out = [self._cache.get(k) for k in keys]
        self._count(out)
        return out

    async def lookup(self, keys: Sequence[ScoreKey]) -> list[float | None]:
        """Scores from this replica's memory, and those it lacks from the shared store
        (kept here too)."""
        if not self.enabled:
            return [None] * len(keys)
        out = [self._cache.get(k) for k in keys]
        missing = [i for i, v in enumerate(out) if v is None]
        if missing and self.shared is not None:
            shared_keys = [self.shared.key("s", keys[i].hex()) for i in missing]
            found = await self.shared.get_many(shared_keys)
            for i, raw in zip(missing, found or (), strict=False):
                score = decode_score(raw)
                if score is not None:
                    out[i] = self._cache[keys[i]] = score
                    self.stats.shared_hits += 1
        self._count(out)
        return out

    def _count(self, found: Sequence[float | None]) -> None:
        hits = sum(v is not None for v in found)
        self.stats.hits += hits
        self.stats.misses += len(found) - hits

    def put_many(self, keys: Sequence[ScoreKey], scores: Sequence[float]) -> None:
        """Into this replica's memory, and (in the background) the shared store."""
        if not self.enabled:
            return
        for k, s in zip(keys, scores, strict=True):
            self._cache[k] = s
        if self.shared is not None and keys:
            items = [
                (self.shared.key("s", k.hex()), encode_score(s))
                for k, s in zip(keys, scores, strict=True)
            ]
            self.shared.put_many(items, self.ttl_s)

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

    def encode(self) -> bytes:
        """As the shared store holds it: a JSON head (status, headers), a newline, the body."""
        head = dumps([self.status, [list(h) for h in self.headers]])
        return head + b"\n" + self.body

    @classmethod
    def decode(cls, data: bytes | None) -> CachedResponse | None:
        if data is None:
            return None
        head, sep, body = data.partition(b"\n")
        try:
            status, headers = loads(head) if sep else (None, ())
            pairs = tuple((str(n), str(v)) for n, v in headers)
        except (ValueError, TypeError):
            return None
        if not isinstance(status, int) or isinstance(status, bool):
            return None
        return cls(status, cacheable_headers(pairs), body)


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
        shared: SharedStore | None = None,
    ) -> None:
        self.enabled = enabled
        self.ttl_s = ttl_s
        self.shared = shared
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
        cls,
        config: ResponseCacheConfig,
        extra_identity: Sequence[str],
        limits: LimitsTuning,
        shared: SharedStore | None = None,
    ) -> ResponseCache:
        return cls(
            limits.response_cache_entries,
            config.ttl_s,
            config.enabled,
            max_bytes=config.max_bytes,
            max_entry_bytes=limits.response_cache_entry_bytes,
            identity=IdentityRule(extra_identity),
            shared=shared,
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
        """This replica's memory only."""
        if not self.enabled:
            return None
        value = self._cache.get(key)
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    async def lookup(self, key: str) -> CachedResponse | None:
        """From this replica's memory, else from the shared store (kept here too)."""
        if not self.enabled:
            return None
        value = self._cache.get(key)
        if value is None and self.shared is not None:
            raw = await self.shared.get(self.shared.key("r", key))
            value = CachedResponse.decode(raw)
            if value is not None:
                self._keep(key, value)
                self.stats.shared_hits += 1
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    def put(self, key: str, value: CachedResponse) -> None:
        """Store ``value`` without its per-request headers (here, and in the background in
        the shared store); one larger than ``max_entry_bytes`` is not stored."""
        if not self.enabled:
            return
        value = CachedResponse(value.status, cacheable_headers(value.headers), value.body)
        if self._keep(key, value) and self.shared is not None:
            self.shared.put(self.shared.key("r", key), value.encode(), self.ttl_s)

    def _keep(self, key: str, value: CachedResponse) -> bool:
        if value.size > self.max_entry_bytes or self._charge(value) > self._cache.maxsize:
            return False
        self._cache[key] = value
        return True

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def bytes(self) -> int:
        return int(self._cache.currsize)

    def clear(self) -> None:
        self._cache.clear()
