"""The one place where exceptions become HTTP responses.

Handlers raise :class:`~sidecar.errors.SidecarError` subclasses; this middleware renders them
in the Elasticsearch error shape. Anything else is a bug: it is logged with its traceback and
the client gets a generic 500 that never echoes the exception text. No error body quotes a
request header: reasons name what was wrong, never the bytes (aiohttp's own answers to
requests it cannot parse are replaced in :mod:`sidecar.http.protocol`).
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from sidecar.errors import RequestTooLarge, SidecarError
from sidecar.http.protocol import refuse_unframed
from sidecar.jsonutil import json_response

log = logging.getLogger("sidecar.errors")


def error_response(exc: SidecarError) -> web.Response:
    resp = json_response(exc.to_body(), status=exc.status)
    extra = getattr(exc, "headers", None)
    if extra:
        resp.headers.update(extra)
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        refuse_unframed(request)
    except SidecarError as exc:
        # Nothing of the body has been read: the connection cannot carry another request.
        resp = error_response(exc)
        resp.force_close()
        return resp
    try:
        return await handler(request)
    except SidecarError as exc:
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size
        return error_response(RequestTooLarge(f"request body is larger than {limit} bytes"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        err = SidecarError(exc.reason)
        err.status = exc.status
        err.error_type = "http_exception"
        return error_response(err)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.rel_url.path)
        return error_response(SidecarError("internal error in the rerank sidecar"))
