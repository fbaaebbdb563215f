"""The debug page at ``/_sidecar/ui``: ES order and reranked order side by side, and a
playground for the direct ``/_sidecar/v1/rerank`` API.

Plain HTML, CSS and JavaScript from :file:`sidecar/static` (no build step, nothing loaded
from elsewhere). The page holds no credentials: it sends its searches to the sidecar it was
served by, with relative URLs, so it works behind a path prefix too.

The files are read once when the routes are added; only the names found then are served,
each with an explicit content type, so no request path ever reaches the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sidecar.config import UiConfig
from sidecar.errors import NotFound
from sidecar.http.access import Guard

PREFIX = "/_sidecar/ui"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

#: Only this origin's scripts, styles and requests; no framing, no form posts, no plugins.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time (cheap with the ETag), so an upgraded sidecar serves its new page.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_static(directory: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """Every servable file directly in ``directory``, by name."""
    files: dict[str, StaticFile] = {}
    if not directory.is_dir():
        return files
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None or not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[path.name] = StaticFile(body, content_type, etag)
    return files


def _respond(request: web.Request, file: StaticFile) -> web.Response:
    headers = {**_SECURITY_HEADERS, "ETag": file.etag}
    if file.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = file.content_type
    return web.Response(body=file.body, headers=headers)


class UI:
    def __init__(self, files: dict[str, StaticFile]) -> None:
        self.files = files

    async def page(self, request: web.Request) -> web.Response:
        file = self.files.get(PAGE)
        if file is None:
            raise NotFound("the debug UI is not installed (sidecar/static/index.html missing)")
        return _respond(request, file)

    async def slash(self, request: web.Request) -> web.Response:
        # Relative, so that a reverse proxy's path prefix survives the redirect.
        location = "../ui" + (f"?{request.query_string}" if request.query_string else "")
        raise web.HTTPMovedPermanently(location=location)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        file = self.files.get(name) if name != PAGE else None
        if file is None:
            raise NotFound(f"no handler found for uri [{request.path}]")
        return _respond(request, file)


def add_routes(app: web.Application, config: UiConfig) -> None:
    """The page and its files, for peers in ``ui.allow_from`` (loopback by default) and,
    with ``ui.token``, only with it (a browser can log in with HTTP Basic: any user name,
    the token as the password)."""
    if not config.enabled:
        return
    ui = UI(load_static())
    guard = Guard("debug UI", config.allow_from, config.token, challenge=True)
    r = app.router
    r.add_get(PREFIX, guard.wrap(ui.page))
    r.add_get(f"{PREFIX}/", guard.wrap(ui.slash))
    r.add_get(PREFIX + "/{name}", guard.wrap(ui.asset))
