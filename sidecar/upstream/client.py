"""The Elasticsearch client: its connection pools and the two ways to use them.

* :meth:`EsClient.relay` streams ES's answer back to the client as it arrives (pass-through
  and searches that are not reranked): the sidecar never holds such a body. A client that
  stops reading is cut off (``tuning.http.min_transfer_bytes_per_s``), so it cannot hold an ES
  connection for long.
* :meth:`EsClient.fetch` reads the whole answer, at most ``tuning.es.max_response_bytes`` of it
  and at most ``tuning.es.max_buffered_bytes`` for all searches together (the rerank path must
  parse it).

Four pools: pass-through requests, searches (so pass-through traffic can never take every
connection from them), one connection for the readiness probe, and two for the sidecar's
own requests (its query log). One client holds at
most half of each of the first two (:mod:`.share`).

Bodies stay compressed in both directions (``auto_decompress=False``), the session adds no
header of its own, and every failure is translated by :func:`~.errors.map_exceptions`.

The sidecar never adds credentials to a client's request: what a client sends is what
authenticates it (``es.url`` cannot carry user-info, and the session has no ``auth``). The
sidecar's own credentials (``es.auth``) are sent only on requests it makes on its own
behalf, :meth:`EsClient.reachable`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sidecar.config import ESAuthConfig, ESConfig, TuningConfig
from sidecar.encoding import TooLarge, decode, encode, readable
from sidecar.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamResponseTooLarge,
)
from sidecar.http.pace import Pace
from sidecar.http.trace import trace_of
from sidecar.upstream.errors import UpstreamDisconnected, map_exceptions
from sidecar.upstream.share import PoolShare
from sidecar.upstream.wire import Body, EsRequest, end_to_end_headers, upstream_url

log = logging.getLogger("sidecar.upstream")

Pool = Literal["passthrough", "search", "probe", "own"]

_LARGE_BODY = 1 << 20
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class BufferedResponse:
    status: int
    reason: str | None
    headers: CIMultiDictProxy[str]
    #: As ES sent it (compressed when the client asked for that and ES obliged).
    body: bytes
    #: Until ES's status line and headers arrived (the ``es`` stage of Server-Timing).
    elapsed_s: float
    #: Gives the body's bytes back to ``tuning.es.max_buffered_bytes`` (idempotent).
    release: Callable[[], None] = field(default=lambda: None, compare=False)

    def decoded(self, limit: int) -> bytes:
        """The body without ES's Content-Encoding, at most ``limit`` bytes of it."""
        encoding = self.headers.get("Content-Encoding")
        if not readable(encoding):
            raise UpstreamBadResponse(
                "Elasticsearch answered in a content encoding the sidecar cannot read"
            )
        try:
            return decode(self.body, encoding, limit)
        except zlib.error as exc:
            raise UpstreamBadResponse("Elasticsearch sent a corrupt compressed body") from exc
        except TooLarge as exc:
            raise _too_large(limit) from exc

    def response(self, body: bytes | None = None) -> web.Response:
        """The client's response: ES's status and end-to-end headers, with ES's body or one
        the sidecar rewrote, encoded as ES encoded its own."""
        headers = end_to_end_headers(self.headers)
        headers.popall("Content-Length", None)
        if body is not None:
            body = encode(body, headers.get("Content-Encoding"))
        return web.Response(
            status=self.status,
            reason=self.reason,
            headers=headers,
            body=self.body if body is None else body,
        )


def own_authorization(auth: ESAuthConfig) -> str | None:
    """The ``Authorization`` value of the sidecar's own credentials (None: it has none).
    Secret files are read here, once, when the client is created."""
    if auth.api_key is not None or auth.api_key_file is not None:
        key = auth.api_key if auth.api_key is not None else _read_secret(auth.api_key_file)
        return f"ApiKey {key}"
    if auth.username is not None:
        password = auth.password if auth.password is not None else _read_secret(auth.password_file)
        token = base64.b64encode(f"{auth.username}:{password}".encode()).decode()
        return f"Basic {token}"
    return None


def _read_secret(path: Path | None) -> str:
    assert path is not None  # the config guarantees one of value and file
    return path.read_text(encoding="utf-8").strip()


class BufferFull(UpstreamError):
    """The rerank path already holds ``tuning.es.max_buffered_bytes`` of ES answers."""

    status = 503
    error_type = "buffer_full_exception"


class ByteBudget:
    """Bytes held at once, bounded: taken while an answer is read, given back after."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> None:
        if self.held + n > self.limit:
            raise BufferFull(
                f"the rerank path holds {self.held} bytes of answers (tuning.es.max_buffered_bytes)"
            )
        self.held += n

    def give(self, n: int) -> None:
        self.held -= n


class EsClient:
    """The connection pools to ES, and everything that is sent on them."""

    def __init__(
        self,
        config: ESConfig,
        sessions: Mapping[Pool, aiohttp.ClientSession],
        tuning: TuningConfig | None = None,
    ) -> None:
        self.config = config
        self.tuning = tuning or TuningConfig()
        self.base = URL(config.url)
        self.sessions = dict(sessions)
        self.buffered = ByteBudget(self.tuning.es.max_buffered_bytes)
        sizes = self.pool_sizes(config, self.tuning)
        #: Each client's share of each pool (the probe's one connection is the sidecar's).
        self.shares = {pool: PoolShare(sizes[pool]) for pool in ("passthrough", "search")}
        self._own_authorization = own_authorization(config.auth)

    @staticmethod
    def pool_sizes(config: ESConfig, tuning: TuningConfig) -> dict[Pool, int]:
        return {
            "passthrough": config.max_connections,
            "search": tuning.es.search_connections,
            "probe": 1,
            # The sidecar's own writes and reads (the UBI log, its report): never a
            # client's connection, never the probe's.
            "own": 2,
        }

    @staticmethod
    def create_sessions(
        config: ESConfig, tuning: TuningConfig | None = None
    ) -> dict[Pool, aiohttp.ClientSession]:
        sizes = EsClient.pool_sizes(config, tuning or TuningConfig())
        return {pool: EsClient.create_session(config, size) for pool, size in sizes.items()}

    @staticmethod
    def create_session(config: ESConfig, connections: int | None = None) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(
            total=None,
            # aiohttp's ``connect`` also covers the wait for a free pooled connection: a
            # burst of searches waits its turn (up to read_s) instead of failing with 502
            # when every connection is busy. Reaching ES itself is bounded by sock_connect.
            connect=config.timeouts.connect_s + config.timeouts.read_s,
            sock_connect=config.timeouts.connect_s,
            sock_read=config.timeouts.read_s,
        )
        size = connections or config.max_connections
        connector = aiohttp.TCPConnector(
            limit=size,
            limit_per_host=size,
            ssl=config.verify_tls,
            enable_cleanup_closed=False,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            # The client must not add headers the frontend did not send (User-Agent,
            # Accept-Encoding): ES should see the original request.
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()

    def url(self, req: EsRequest) -> URL:
        return upstream_url(self.base, req.path_qs)

    @asynccontextmanager
    async def open(
        self, req: EsRequest, pool: Pool = "passthrough", client: str = ""
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send ``req`` on ``pool`` for ``client`` (its share of the pool) and yield ES's
        response once its headers arrived."""
        share = self.shares.get(pool)
        if share is None or not client:
            async with self._open(req, pool) as resp:
                yield resp
            return
        timeouts = self.config.timeouts
        async with (
            share.hold(client, timeouts.connect_s + timeouts.read_s),
            self._open(req, pool) as resp,
        ):
            yield resp

    @asynccontextmanager
    async def _open(self, req: EsRequest, pool: Pool) -> AsyncIterator[aiohttp.ClientResponse]:
        session = self.sessions[pool]
        # Only a body the sidecar holds can be sent again: a streamed one is partly consumed
        # by the failed attempt, and a retry would send ES a truncated body (even for GET).
        attempts = 2 if isinstance(req.body, bytes | None) else 1
        for attempt in range(attempts):
            try:
                with map_exceptions():
                    resp = await session.request(
                        req.method,
                        self.url(req),
                        headers=req.headers,
                        data=_payload(req.body),
                        allow_redirects=False,
                        compress=None,
                    )
            except UpstreamDisconnected:
                # A pooled keep-alive connection that ES closed (e.g. after a restart).
                if attempt + 1 < attempts:
                    log.debug("upstream closed a pooled connection; retrying once")
                    continue
                raise
            try:
                yield resp
            finally:
                resp.release()
            return

    async def fetch(
        self, req: EsRequest, pool: Pool = "search", client: str = ""
    ) -> BufferedResponse:
        """Send ``req`` and read the whole answer, at most ``tuning.es.max_response_bytes`` of it
        (encoded; :meth:`BufferedResponse.decoded` bounds the decoded size): past that,
        UpstreamResponseTooLarge (502). Its bytes count against ``tuning.es.max_buffered_bytes``
        until the caller calls ``release()``; past that, BufferFull."""
        limit = self.tuning.es.max_response_bytes
        t0 = time.perf_counter()
        held = 0
        try:
            async with self.open(req, pool, client) as resp:
                elapsed = time.perf_counter() - t0
                if resp.content_length is not None and resp.content_length > limit:
                    raise _too_large(limit)
                buf = bytearray()
                with map_exceptions(mid_response=True):
                    async for chunk in resp.content.iter_any():
                        buf += chunk
                        if len(buf) > limit:
                            raise _too_large(limit)
                        self.buffered.take(len(chunk))
                        held += len(chunk)
        except BaseException:
            self.buffered.give(held)
            raise
        given = False

        def release() -> None:
            nonlocal given
            if not given:
                given = True
                self.buffered.give(held)

        return BufferedResponse(
            resp.status, resp.reason, resp.headers, bytes(buf), elapsed, release
        )

    async def reachable(self) -> bool:
        """The readiness probe, on the sidecar's own behalf: any HTTP answer to ``GET /``
        counts (a secured cluster says 401 to a request without credentials). It carries
        the sidecar's own ``es.auth`` credentials when configured, and nothing else."""
        headers: CIMultiDict[str] = CIMultiDict()
        if self._own_authorization is not None:
            headers["Authorization"] = self._own_authorization
        try:
            answer = await self.fetch(EsRequest("GET", "/", headers, None), pool="probe")
        except UpstreamError:
            return False
        answer.release()
        return True

    async def own(
        self, method: str, path: str, body: bytes | None, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """A request the sidecar makes on its own behalf (its UBI log and report), with its
        own ``es.auth`` credentials, on its own pool: (status, body read whole, at most
        ``tuning.es.max_response_bytes``)."""
        headers: CIMultiDict[str] = CIMultiDict()
        if body is not None:
            headers["Content-Type"] = content_type
        if self._own_authorization is not None:
            headers["Authorization"] = self._own_authorization
        answer = await self.fetch(EsRequest(method, path, headers, body), pool="own")
        try:
            return answer.status, answer.decoded(self.tuning.es.max_response_bytes)
        finally:
            answer.release()

    async def relay(
        self,
        request: web.Request,
        req: EsRequest,
        *,
        on_headers: Mapping[str, str] | None = None,
        pool: Pool = "passthrough",
        client: str = "",
    ) -> web.StreamResponse:
        """Send ``req`` and stream ES's answer to ``request``'s client unchanged (status,
        reason, end-to-end headers, body; ``HEAD`` keeps ES's ``Content-Length``)."""
        t0 = time.perf_counter()
        async with self.open(req, pool, client) as resp:
            trace_of(request).es_s = time.perf_counter() - t0
            out = web.StreamResponse(status=resp.status, reason=resp.reason)
            out.headers.extend(end_to_end_headers(resp.headers))
            if on_headers:
                out.headers.update(on_headers)
            if request.method == "HEAD" or resp.status in (204, 304):
                await out.prepare(request)
                await out.write_eof()
                return out
            if "Content-Length" not in resp.headers:
                out.enable_chunked_encoding()
            await out.prepare(request)
            http = self.tuning.http
            pace = Pace(http.min_transfer_bytes_per_s, http.transfer_grace_s)
            try:
                with map_exceptions(mid_response=True):
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        try:
                            # One piece may take transfer_grace_s at most, and the
                            # whole answer must keep the minimum rate.
                            wait = min(http.transfer_grace_s, pace.allowance(len(chunk)))
                            async with asyncio.timeout(wait):
                                await out.write(chunk)
                        except TimeoutError:
                            # The client stopped reading: ES's connection is not its to keep.
                            log.warning("client too slow reading %s; closing", req.path_qs)
                            # abort, not close: close would wait to flush to that client.
                            if request.transport is not None:
                                request.transport.abort()
                            return out
            except UpstreamError:
                # The status line is already sent, so no error body can follow. Cutting the
                # connection is the only honest signal: the client sees a truncated response
                # instead of one that looks complete.
                log.warning("Elasticsearch broke off mid-response on %s; closing", req.path_qs)
                if request.transport is not None:
                    request.transport.close()
                return out
            await out.write_eof()
            return out


def _payload(data: Body) -> object:
    # aiohttp writes large ``bytes`` in one go (and warns that it may block the loop); a
    # BytesIO is written in chunks. A fresh one per attempt keeps the body replayable.
    if isinstance(data, bytes) and len(data) > _LARGE_BODY:
        return io.BytesIO(data)
    return data


def _too_large(limit: int) -> UpstreamResponseTooLarge:
    return UpstreamResponseTooLarge(
        f"the Elasticsearch response is larger than {limit} bytes (tuning.es.max_response_bytes), "
        "too large to rerank"
    )
