"""The one place where exceptions become HTTP responses.

Handlers raise :class:`~sidecar.errors.SidecarError` subclasses; this middleware renders them
in the Elasticsearch error shape. Anything else is a bug: it is logged with its traceback and
the client gets a generic 500 that never echoes the exception text.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from sidecar.errors import RequestTooLarge, SidecarError
from sidecar.jsonutil import json_response

log = logging.getLogger("sidecar.errors")


def error_response(exc: SidecarError) -> web.Response:
    return json_response(exc.to_body(), status=exc.status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
