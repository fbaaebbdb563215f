"""The Elasticsearch upstream: one pooled ClientSession and the forwarding primitives.

Everything the sidecar sends to ES goes through :class:`Upstream`. It

* builds the upstream URL from the configured base and the request's *relative* path and
  query, so an absolute-URI request line or a ``Host`` header can never pick another host;
* copies end-to-end headers (``Authorization`` included) and drops hop-by-hop ones
  (RFC 9110 section 7.6.1: the fixed list plus whatever ``Connection`` names);
* leaves bodies compressed in both directions (``auto_decompress=False``) so that
  ``Content-Encoding`` passes through untouched;
* translates aiohttp's exceptions into :mod:`sidecar.errors` in one place: 502 when ES cannot
  be reached, 504 when it does not answer within the read timeout.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sidecar.config import ESConfig
from sidecar.errors import UpstreamResponseTooLarge, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("sidecar.upstream")

#: RFC 9110 7.6.1 hop-by-hop fields, plus Proxy-* and Host (the client sets the upstream's).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)

_LARGE_BODY = 1 << 20


def end_to_end_headers(headers: Mapping[str, str] | CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Copy ``headers`` without hop-by-hop fields (and the ones ``Connection`` lists)."""
    extra: set[str] = set()
    for value in headers.getall("Connection", []) if isinstance(headers, CIMultiDictProxy) else []:
        extra.update(token.strip().lower() for token in value.split(",") if token.strip())
    out: CIMultiDict[str] = CIMultiDict()
    items: Iterable[tuple[str, str]] = headers.items()
    for name, value in items:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in extra:
            continue
        out.add(name, value)
    return out


def upstream_url(base: URL, request: web.BaseRequest, path_qs: str | None = None) -> URL:
    """The URL on the configured ES for this request's path and query string.

    ``rel_url`` is always origin-form here: aiohttp reduces an absolute-URI request line to
    its path, and we never look at ``Host``.
    """
    raw = path_qs if path_qs is not None else request.rel_url.raw_path_qs
    if not raw.startswith("/"):
        raw = "/" + raw
    return URL(str(base).rstrip("/") + raw, encoded=True)


@dataclass(frozen=True)
class BufferedResponse:
    status: int
    reason: str | None
    headers: CIMultiDictProxy[str]
    body: bytes


class Upstream:
    """The one connection pool to ES plus request helpers."""

    def __init__(self, config: ESConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.base = URL(config.url)
        self.session = session

    @staticmethod
    def create_session(config: ESConfig) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=config.timeouts.connect_s,
            sock_connect=config.timeouts.connect_s,
            sock_read=config.timeouts.read_s,
        )
        connector = aiohttp.TCPConnector(
            limit=config.max_connections,
            limit_per_host=config.max_connections,
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

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        data: bytes | AsyncIterable[bytes] | None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a request to ES; errors become UpstreamUnavailable/UpstreamTimeout."""
        # Only a body the sidecar holds can be sent again: a streamed one is partly consumed
        # by the failed attempt, and a retry would send ES a truncated body (even for GET).
        attempts = 2 if isinstance(data, bytes | None) else 1
        for attempt in range(attempts):
            try:
                resp = await self.session.request(
                    method,
                    url,
                    headers=headers,
                    data=_payload(data),
                    allow_redirects=False,
                    compress=None,
                )
            except aiohttp.ServerDisconnectedError as exc:
                # A pooled keep-alive connection that ES closed (e.g. after a restart):
                # nothing reached ES, so a replayable request is sent once more.
                if attempt + 1 < attempts:
                    log.debug("upstream closed a pooled connection; retrying once")
                    continue
                raise UpstreamUnavailable("Elasticsearch closed the connection") from exc
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise _timeout_error(exc) from exc
            except aiohttp.ClientConnectorError as exc:
                raise UpstreamUnavailable("cannot connect to Elasticsearch") from exc
            except aiohttp.ClientError as exc:
                raise UpstreamUnavailable("connection to Elasticsearch failed") from exc
            try:
                yield resp
            finally:
                resp.release()
            return

    async def fetch(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        data: bytes | None,
    ) -> BufferedResponse:
        """Send a request and read the whole response (for intercepted searches), at most
        ``es.max_response_bytes`` of it: past that, UpstreamResponseTooLarge (502)."""
        limit = self.config.max_response_bytes
        async with self.request(method, url, headers, data) as resp:
            try:
                if resp.content_length is not None and resp.content_length > limit:
                    raise _too_large(limit)
                buf = bytearray()
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    if len(buf) > limit:
                        raise _too_large(limit)
                body = bytes(buf)
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise _timeout_error(exc) from exc
            except aiohttp.ClientError as exc:
                raise UpstreamUnavailable("connection to Elasticsearch broke mid-response") from exc
            return BufferedResponse(resp.status, resp.reason, resp.headers, body)


def _payload(data: bytes | AsyncIterable[bytes] | None) -> object:
    # aiohttp writes large ``bytes`` in one go (and warns that it may block the loop); a
    # BytesIO is written in chunks. A fresh one per attempt keeps the body replayable.
    if isinstance(data, bytes) and len(data) > _LARGE_BODY:
        return io.BytesIO(data)
    return data


def _too_large(limit: int) -> UpstreamResponseTooLarge:
    return UpstreamResponseTooLarge(
        f"the Elasticsearch response is larger than {limit} bytes (es.max_response_bytes), "
        "too large to rerank"
    )


def _timeout_error(exc: BaseException) -> UpstreamUnavailable | UpstreamTimeout:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # A connect timeout means ES cannot be reached (502), not that it is slow (504).
        return UpstreamUnavailable("timed out connecting to Elasticsearch")
    return UpstreamTimeout("Elasticsearch did not answer in time")
