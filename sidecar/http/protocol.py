"""HTTP/1.1 connection limits of the sidecar's own server, and what a malformed request logs.

aiohttp reads request lines and headers before any handler runs. Its limits come from
``tuning.http`` in the config (``web.Application(handler_args=...)``, so the CLI and tests get the
same ones):

* ``keepalive_timeout_s``: aiohttp starts this timer when a connection opens and after each
  response, and closes the connection if no complete request has arrived when it fires. It
  is therefore also the header-read timeout: a client that drips its headers cannot hold a
  connection longer than this.
* ``max_headers``, ``max_field_size``, ``max_line_size``: past them aiohttp answers 400 and
  closes the connection.

aiohttp logs such a refused request with the parser's exception, whose text quotes the first
100 bytes of the offending line: for an oversized ``Authorization`` header, the credentials.
:class:`RedactBadRequests` reduces those records to the error's kind, without the bytes and
without a traceback. Its answer quotes the same bytes; :func:`protocol_error` replaces it,
on the sidecar's own connections, with an ES-shaped body that names only the kind of error.

:func:`refuse_unframed` then refuses, before any handler reads a byte of the body, what the
parser lets through but the sidecar cannot pass on faithfully: HTTP/0.9 request lines (no
headers, so no Host, no Content-Type, no credentials: ES refuses them too) and transfer
codings other than a single ``chunked`` (the parser removes the chunking but not a ``gzip``
coding before it, and the body would reach ES relabelled; RFC 9112 6.1: 501).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion10
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.web_protocol import RequestHandler

from sidecar.config import HttpTuning
from sidecar.errors import BadRequest, SidecarError
from sidecar.jsonutil import json_response

HTTP_LOG = logging.getLogger("sidecar.http")


class RedactBadRequests(logging.Filter):
    """Malformed requests: one warning line naming the kind of error, never the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            what = _kind(exc)
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "refused a malformed HTTP request from %s: %s (HTTP %s)"
            record.args = (peer, what, exc.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


if not any(isinstance(f, RedactBadRequests) for f in HTTP_LOG.filters):
    HTTP_LOG.addFilter(RedactBadRequests())


def handler_args(config: HttpTuning) -> dict[str, Any]:
    """Keyword arguments for aiohttp's per-connection ``RequestHandler``."""
    return {
        "keepalive_timeout": config.keepalive_timeout_s,
        "max_headers": config.max_headers,
        "max_field_size": config.max_field_size,
        "max_line_size": config.max_line_size,
        "logger": HTTP_LOG,
    }


def _kind(exc: BaseException | None) -> str:
    """What was wrong with a request the parser refused, in words that quote none of it."""
    if isinstance(exc, LineTooLong):
        return "a request line or header longer than the configured limit"
    if isinstance(exc, BadHttpMethod):
        return "an invalid HTTP method"
    if isinstance(exc, BadStatusLine):
        return "an invalid request line"
    if isinstance(exc, InvalidURLError):
        return "an invalid request target"
    if isinstance(exc, InvalidHeader):
        return "an invalid header"
    if isinstance(exc, PayloadEncodingError):
        return "an invalid body framing or encoding"
    if isinstance(exc, HttpProcessingError):
        return "a malformed HTTP request"
    return type(exc).__name__ if exc is not None else "an error"


class ProtocolError(SidecarError):
    error_type = "http_exception"


class TransferCodingNotSupported(SidecarError):
    status = 501
    error_type = "http_exception"


_AIOHTTP_HANDLE_ERROR = RequestHandler.handle_error


def protocol_error(
    self: RequestHandler,
    request: web.BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    """aiohttp's answer to a request it could not parse or handle, ES-shaped and quoting
    nothing the client sent. Only the sidecar's connections (those that log to
    :data:`HTTP_LOG`) are answered this way; any other aiohttp server in the process keeps
    aiohttp's own behaviour."""
    if self.logger is not HTTP_LOG:
        return _AIOHTTP_HANDLE_ERROR(self, request, status, exc, message)
    # aiohttp's own handler logs (through RedactBadRequests) and refuses to answer on a
    # connection whose response has already begun; its body is discarded.
    _AIOHTTP_HANDLE_ERROR(self, request, status, exc, None)
    if status >= 500:
        err: SidecarError = SidecarError("internal error in the rerank sidecar")
    else:
        err = ProtocolError(f"the request was refused: {_kind(exc)}")
    err.status = status
    resp = json_response(err.to_body(), status=status)
    resp.force_close()
    return resp


setattr(RequestHandler, "handle_error", protocol_error)  # noqa: B010 - see protocol_error


def refuse_unframed(request: web.BaseRequest) -> None:
    """Raise for a request the sidecar will not pass on (see the module docstring)."""
    if request.version < HttpVersion10:
        raise BadRequest("HTTP/0.9 requests are not supported")
    codings = [
        token.strip().lower()
        for value in request.headers.getall("Transfer-Encoding", [])
        for token in value.split(",")
    ]
    if codings and codings != ["chunked"]:
        raise TransferCodingNotSupported(
            "transfer codings other than a single chunked are not supported"
        )
