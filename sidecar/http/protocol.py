"""HTTP/1.1 connection limits of the sidecar's own server, and what a malformed request logs.

aiohttp reads request lines and headers before any handler runs. Its limits come from
``server`` in the config (``web.Application(handler_args=...)``, so the CLI and tests get the
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
without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from sidecar.config import ServerConfig

HTTP_LOG = logging.getLogger("sidecar.http")


class RedactBadRequests(logging.Filter):
    """Malformed requests: one warning line naming the kind of error, never the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            if isinstance(exc, LineTooLong):
                what = "a request line or header longer than the configured limit"
            else:
                what = type(exc).__name__
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "refused a malformed HTTP request from %s: %s (HTTP %s)"
            record.args = (peer, what, exc.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


if not any(isinstance(f, RedactBadRequests) for f in HTTP_LOG.filters):
    HTTP_LOG.addFilter(RedactBadRequests())


def handler_args(config: ServerConfig) -> dict[str, Any]:
    """Keyword arguments for aiohttp's per-connection ``RequestHandler``."""
    return {
        "keepalive_timeout": config.keepalive_timeout_s,
        "max_headers": config.max_headers,
        "max_field_size": config.max_field_size,
        "max_line_size": config.max_line_size,
        "logger": HTTP_LOG,
    }
