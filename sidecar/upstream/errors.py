"""The one map from aiohttp's client exceptions to the sidecar's error types.

In the style of httpx's ``map_exceptions``: every call that can fail on the wire runs
inside :func:`map_exceptions`, so there is one place that decides which failure is a 502
(ES cannot be used) and which a 504 (ES is slow), and no other except-ladder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from sidecar.errors import UpstreamTimeout, UpstreamUnavailable


class UpstreamDisconnected(UpstreamUnavailable):
    """ES closed a pooled keep-alive connection before answering: nothing reached ES, so a
    request whose body the sidecar holds may be sent once more."""


@contextmanager
def map_exceptions(*, mid_response: bool = False) -> Iterator[None]:
    """Translate client failures; ``mid_response`` once the status line has been read."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        # A connect timeout means ES cannot be reached (502), not that it is slow (504).
        raise UpstreamUnavailable("timed out connecting to Elasticsearch") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout("Elasticsearch did not answer in time") from exc
    except aiohttp.ServerDisconnectedError as exc:
        if mid_response:
            raise UpstreamUnavailable("connection to Elasticsearch broke mid-response") from exc
        raise UpstreamDisconnected("Elasticsearch closed the connection") from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailable("cannot connect to Elasticsearch") from exc
    except aiohttp.ClientError as exc:
        if mid_response:
            raise UpstreamUnavailable("connection to Elasticsearch broke mid-response") from exc
        raise UpstreamUnavailable("connection to Elasticsearch failed") from exc
