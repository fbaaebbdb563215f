"""Fast JSON (orjson) in one place, so every module encodes and decodes the same way."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sidecar.errors import BadRequest


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def parse_body(data: bytes, *, what: str = "request body") -> Any:
    """Decode a client's JSON body or raise a 400 that says what was wrong."""
    if not data.strip():
        raise BadRequest(f"{what} is required")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON (at byte {exc.pos})") from exc


def json_response(
    value: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(value), status=status, headers=headers, content_type="application/json"
    )
