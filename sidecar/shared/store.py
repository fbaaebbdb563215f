"""The shared store: Redis or Valkey (the Redis 7 protocol, redis-py's asyncio client) as
a tier under each replica's own caches (``shared.url``).

Redis is never a dependency of search:

* every call has its own timeout (``tuning.shared.timeout_ms``; a read is not cut at the
  search's rerank deadline, since what it finds spares the model), and a read that fails
  for any reason is a miss: the search goes on with the replica's own state;
* writes never wait on a search's path: they are queued (bounded in bytes; past the bound
  they are dropped and counted) and one background task sends them, in pipelines;
* after a failure Redis is left alone for ``tuning.shared.retry_s`` (doubling up to
  :data:`MAX_BACKOFF_S` while it keeps failing); then one call at a time tries again, and
  the first that succeeds shares again. Redis full (``maxmemory`` with ``noeviction``:
  OOM) pauses writes only, since reads still answer.

Every failure is counted by kind (``timeout``, ``unavailable``, ``full``, ``refused``,
``error``) for ``/_sidecar/ready`` and the metrics.

Key layout: ``{shared.key_prefix}v1:{kind}:{digest}``: ``s`` a score, ``r`` a cached
response, ``o`` the served order of a search's window. Digests only: no query text, no
credential, no header value is ever part of a key. Each value carries its cache's TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sidecar.config import SharedConfig, SharedTuning, public_url

log = logging.getLogger("sidecar.shared")

T = TypeVar("T")
Kind = Literal["timeout", "unavailable", "full", "refused", "error"]
KINDS: tuple[Kind, ...] = ("timeout", "unavailable", "full", "refused", "error")
DROPS = ("unavailable", "queue_full", "too_large")
#: The longest Redis is left alone while it keeps failing.
MAX_BACKOFF_S = 30.0
#: Writes sent in one pipeline at most (entries, bytes).
BATCH_ENTRIES = 128
BATCH_BYTES = 512 * 1024
#: An admin clear's calls may take this long each (it walks every key under the prefix).
CLEAR_TIMEOUT_S = 5.0


def kind_of(exc: BaseException) -> Kind:
    """What a failed call says about Redis."""
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return "timeout"
    if isinstance(exc, OutOfMemoryError):
        return "full"
    if isinstance(exc, AuthenticationError | AuthorizationError | ResponseError):
        return "refused"  # wrong password, ACL, LOADING, READONLY, BUSY...
    if isinstance(exc, RedisConnectionError | OSError):
        return "unavailable"
    return "error"


@dataclass
class Gate:
    """Whether a call may go to Redis now: always while it answers; after a failure not
    until ``retry_at``, then one call at a time (a probe) until one succeeds. When the
    failure was ``full``, reads still go."""

    first_backoff_s: float
    clock: Callable[[], float] = time.monotonic
    down_since: float | None = None
    kind: Kind | None = None
    retry_at: float = 0.0
    backoff_s: float = 0.0
    probing: bool = False

    def blocked(self, write: bool) -> bool:
        """Whether a call would be refused now (without taking the probe)."""
        if self.down_since is None or (not write and self.kind == "full"):
            return False
        return self.probing or self.clock() < self.retry_at

    def open(self, write: bool) -> bool:
        """Whether this call may go (when Redis is down, it is then the probe)."""
        if self.blocked(write):
            return False
        if self.down_since is not None and (write or self.kind != "full"):
            self.probing = True
        return True

    def release(self) -> None:
        """The probe ended without a verdict (its caller went away)."""
        self.probing = False

    def ok(self, write: bool) -> bool:
        """A call succeeded; whether Redis is back."""
        if self.down_since is None or (not write and self.kind == "full"):
            return False
        self.down_since, self.kind, self.backoff_s, self.probing = None, None, 0.0, False
        return True

    def failed(self, kind: Kind) -> bool:
        """A call failed; whether Redis was up until now."""
        now = self.clock()
        newly = self.down_since is None
        if newly:
            self.down_since = now
            self.backoff_s = self.first_backoff_s
        else:
            self.backoff_s = min(self.backoff_s * 2, MAX_BACKOFF_S)
        self.kind, self.retry_at, self.probing = kind, now + self.backoff_s, False
        return newly

    @property
    def state(self) -> str:
        if self.down_since is None:
            return "up"
        return "full" if self.kind == "full" else "down"


def _client(config: SharedConfig, tuning: SharedTuning) -> Redis:
    """One client with a bounded pool; redis-py's own retries are off (a failed call is a
    miss, and the gate decides when to try again)."""
    assert config.url is not None
    timeout = tuning.timeout_ms / 1000
    password = None
    if config.password_file is not None:
        password = config.password_file.read_text(encoding="utf-8").strip()
    kwargs: dict[str, Any] = {
        "max_connections": tuning.connections,
        "timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "username": config.username,
        "password": password,
        "client_name": "rerank-sidecar",
    }
    if config.url.startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = "required" if config.verify_tls else "none"
        kwargs["ssl_check_hostname"] = config.verify_tls
        if config.ca_file is not None:
            kwargs["ssl_ca_certs"] = str(config.ca_file)
    pool = BlockingConnectionPool.from_url(config.url, **kwargs)
    return Redis(connection_pool=pool)


class SharedStore:
    """Redis under one key prefix. Reads answer None on any failure; writes are queued."""

    def __init__(
        self,
        config: SharedConfig,
        tuning: SharedTuning,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert config.url is not None
        self.url = public_url(config.url)
        self.prefix = config.key_prefix + "v1:"
        self.max_entry_bytes = tuning.max_entry_bytes
        self._client = _client(config, tuning)
        self._timeout_s = tuning.timeout_ms / 1000
        self._queue_limit = tuning.write_queue_bytes
        self.gate = Gate(tuning.retry_s, clock)
        self._pending: deque[tuple[str, bytes, int]] = deque()
        self._pending_bytes = 0
        #: Bytes of the batch being sent (counted as queued until Redis has answered).
        self._sending_bytes = 0
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.errors: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.written = 0
        self.last_error: str | None = None

    @classmethod
    def from_config(cls, config: SharedConfig, tuning: SharedTuning) -> SharedStore | None:
        return None if config.url is None else cls(config, tuning)

    def key(self, kind: str, digest: str) -> str:
        return f"{self.prefix}{kind}:{digest}"

    async def start(self) -> None:
        """Start the writer, and learn whether Redis answers (the state /ready shows)."""
        self._writer = asyncio.create_task(self._write_loop())
        await self._call(self._client.ping, write=False)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
        await self._client.connection_pool.disconnect()

    # --- calls ------------------------------------------------------------------------------

    async def _call(self, op: Callable[[], Awaitable[T]], *, write: bool) -> T | None:
        """``op()``'s answer, or None when Redis is left alone now, the call failed or it
        took longer than its timeout."""
        if not self.gate.open(write):
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await op()
        except asyncio.CancelledError:
            self.gate.release()
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        if self.gate.ok(write):
            log.info("shared state (%s) answers again: sharing resumes", self.url)
        return answer

    def _failed(self, exc: BaseException) -> None:
        kind = kind_of(exc)
        self.errors[kind] += 1
        self.last_error = f"{kind}: {type(exc).__name__}"
        if kind == "error":
            log.exception("shared state (%s): unexpected failure", self.url, exc_info=exc)
        if self.gate.failed(kind):
            log.warning(
                "shared state (%s) %s (%s): this replica serves from its own memory "
                "(or in ES order) and tries again in %gs",
                self.url,
                "is full" if kind == "full" else "failed",
                type(exc).__name__,
                self.gate.backoff_s,
            )

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None] | None:
        """The values of ``keys`` (None for a missing one), or None when Redis could not
        be asked within its timeout."""
        if not keys:
            return []
        found = await self._call(lambda: self._client.mget(keys), write=False)
        if found is None:
            return None
        return [v if isinstance(v, bytes) else None for v in found]

    async def get(self, key: str) -> bytes | None:
        found = await self.get_many([key])
        return found[0] if found else None

    # --- writes -----------------------------------------------------------------------------

    def put_many(self, items: Sequence[tuple[str, bytes]], ttl_s: float) -> None:
        """Queue ``items`` to be written with a TTL; dropped (and counted) when Redis is
        left alone now, when one is larger than ``max_entry_bytes``, or past the bound."""
        ttl_ms = max(1, int(ttl_s * 1000))
        for key, value in items:
            size = len(key) + len(value)
            if self.gate.blocked(write=True):
                self.dropped["unavailable"] += 1
            elif len(value) > self.max_entry_bytes:
                self.dropped["too_large"] += 1
            elif self._pending_bytes + size > self._queue_limit:
                self.dropped["queue_full"] += 1
            else:
                self._pending.append((key, value, ttl_ms))
                self._pending_bytes += size
        if self._pending:
            self._wake.set()

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self.put_many([(key, value)], ttl_s)

    def _batch(self) -> list[tuple[str, bytes, int]]:
        batch: list[tuple[str, bytes, int]] = []
        size = 0
        while self._pending and len(batch) < BATCH_ENTRIES and (not batch or size < BATCH_BYTES):
            key, value, ttl_ms = self._pending.popleft()
            self._pending_bytes -= len(key) + len(value)
            size += len(key) + len(value)
            batch.append((key, value, ttl_ms))
        return batch

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._batch()
                self._sending_bytes = sum(len(k) + len(v) for k, v, _ in batch)
                try:
                    sent = await self._send(batch)
                finally:
                    self._sending_bytes = 0
                if sent:
                    self.written += len(batch)
                else:
                    self.dropped["unavailable"] += len(batch)

    async def _send(self, batch: list[tuple[str, bytes, int]]) -> bool:
        pipe = self._client.pipeline(transaction=False)
        for key, value, ttl_ms in batch:
            pipe.set(key, value, px=ttl_ms)
        return await self._call(pipe.execute, write=True) is not None

    # --- admin --------------------------------------------------------------------------------

    async def clear(self) -> int | None:
        """Delete every key under the prefix (all replicas' shared state); how many, or
        None when Redis could not be asked."""
        deleted, cursor = 0, 0
        try:
            while True:
                async with asyncio.timeout(CLEAR_TIMEOUT_S):
                    cursor, keys = await self._client.scan(
                        cursor, match=self.prefix + "*", count=500
                    )
                    if keys:
                        deleted += int(await self._client.unlink(*keys))
                if not cursor:
                    return deleted
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None

    # --- state --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """For ``/_sidecar/ready`` and the metrics: no credential, the URL as shown."""
        gate = self.gate
        return {
            "backend": "redis",
            "url": self.url,
            "state": gate.state,
            "down_for_s": (
                None if gate.down_since is None else round(gate.clock() - gate.down_since, 3)
            ),
            "errors": {kind: self.errors.get(kind, 0) for kind in KINDS},
            "last_error": self.last_error,
            "written": self.written,
            "dropped": {reason: self.dropped.get(reason, 0) for reason in DROPS},
            # Waiting or being sent: 0 once every write made so far has had Redis's answer.
            "queued_bytes": self._pending_bytes + self._sending_bytes,
        }
