"""Who may use one of the sidecar's own surfaces (admin, debug UI, rerank API, metrics), and
from which web origins.

:class:`Guard` is the same two checks for every surface, resolved once when the routes are
added:

1. the TCP peer (never a forwarding header: a client writes those) must lie in the
   surface's ``allow_from``; anyone else gets the plain 404 of a path that does not exist;
2. when the surface has a token: ``Authorization: Bearer <token>``, or HTTP Basic with the
   token as the password (what a browser can send for the UI). 401 without one, 403 with a
   wrong one, compared in constant time.

:class:`Cors` decides browser access to the rerank API. A request without ``Origin`` (curl,
SDKs) is not a browser's cross-origin request. A browser page may call the API from its own
origin when that origin is an IP address or ``localhost`` (a page on another name that
resolves to the sidecar, as in DNS rebinding, is refused), or from an origin listed in
``api.cors_origins``; any other ``Origin`` gets 403.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from aiohttp import web

from sidecar.errors import Forbidden, NotFound, SidecarError, Unauthorized
from sidecar.http.errors import error_response
from sidecar.netmatch import in_networks, parse_address, parse_networks

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def not_found(request: web.BaseRequest) -> NotFound:
    return NotFound(f"no handler found for uri [{request.path}]")


class Challenge(Unauthorized):
    """A 401 that tells a browser it may log in with HTTP Basic."""

    def __init__(self, reason: str, realm: str) -> None:
        super().__init__(reason)
        self.headers = {"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'}


def presented_token(header: str) -> str:
    """The token in ``Authorization``: a Bearer token, or the password of HTTP Basic."""
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


class Guard:
    """``allow_from`` and an optional (``required``: mandatory) token for one surface."""

    def __init__(
        self,
        surface: str,
        allow_from: Sequence[str],
        token: str | None,
        *,
        required: bool = False,
        challenge: bool = False,
        token_name: str | None = None,
    ) -> None:
        self.surface = surface
        self.token_name = token_name or surface
        self.networks = parse_networks(allow_from)
        self.token = token.encode() if token else b""
        self.required = required
        self.challenge = challenge

    def check(self, request: web.BaseRequest, *, authenticate: bool = True) -> None:
        if not in_networks(parse_address(request.remote), self.networks):
            raise not_found(request)
        if not authenticate or not (self.token or self.required):
            return
        given = presented_token(request.headers.get("Authorization", ""))
        if not given:
            reason = f"the {self.surface} needs Authorization: Bearer <token>"
            if self.challenge:
                raise Challenge(reason, f"rerank-sidecar {self.surface}")
            raise Unauthorized(reason)
        if not self.token or not hmac.compare_digest(given.encode(), self.token):
            raise Forbidden(f"wrong {self.token_name} token")

    def wrap(self, handler: Handler, *, authenticate: bool = True) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            self.check(request, authenticate=authenticate)
            return await handler(request)

        return guarded


def _is_local_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class Cors:
    """Browser access by ``Origin``: see the module docstring."""

    def __init__(self, origins: Sequence[str]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(o.lower() for o in origins if o != "*")

    def allow(self, request: web.BaseRequest) -> dict[str, str]:
        """The CORS response headers for this request; Forbidden for a refused origin."""
        origin = request.headers.get("Origin")
        if origin is None:
            return {}
        origin = origin.strip().lower()
        if self.any:
            return {"Access-Control-Allow-Origin": "*"}
        if origin in self.origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        parts = urlsplit(origin)
        host = (request.host or "").lower()
        if parts.hostname and parts.netloc == host and _is_local_name(parts.hostname):
            return {}
        raise Forbidden("cross-origin use of the rerank API is not allowed (see api.cors_origins)")

    def wrap(self, handler: Handler) -> Handler:
        async def with_cors(request: web.Request) -> web.StreamResponse:
            headers = self.allow(request)
            try:
                response = await handler(request)
            except SidecarError as exc:
                # An allowed page may read the error too.
                response = error_response(exc)
            response.headers.update(headers)
            return response

        return with_cors

    async def preflight(self, request: web.Request) -> web.Response:
        headers = self.allow(request)
        if not headers:
            # Same-origin or no Origin: nothing to grant.
            return web.Response(status=204)
        headers.update(
            {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600",
            }
        )
        return web.Response(status=204, headers=headers)
