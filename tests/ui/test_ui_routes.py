"""How ``/_sidecar/ui`` serves its files: content types, security headers, no path escape.

Only :func:`sidecar.handlers.ui.add_routes` on a bare application: no ES, no model.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.config import UiConfig
from sidecar.handlers import ui
from sidecar.http.errors import error_middleware


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application(middlewares=[error_middleware])
    ui.add_routes(app, UiConfig())
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    try:
        yield str(srv.make_url("")).rstrip("/")
    finally:
        await srv.close()


async def test_page_and_assets_have_their_content_types(server: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server}/_sidecar/ui") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/html; charset=utf-8"
            page = await r.text()
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        # Everything the page loads is served here, from the same origin.
        refs = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert refs, "the page loads its script and styles"
        for ref in refs:
            if ref.startswith("data:"):
                continue
            assert not re.match(r"^[a-z]+://|^//", ref), f"{ref} is not same-origin"
        expected = {"ui/app.js": "text/javascript", "ui/app.css": "text/css"}
        assert set(expected) <= set(refs)
        for ref, kind in expected.items():
            async with s.get(f"{server}/_sidecar/{ref}") as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == f"{kind}; charset=utf-8"
                assert len(await r.read()) > 100


async def test_etag_revalidation_and_head(server: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server}/_sidecar/ui/app.js") as r:
            etag = r.headers["ETag"]
            assert r.headers["Cache-Control"] == "no-cache"
        async with s.get(f"{server}/_sidecar/ui/app.js", headers={"If-None-Match": etag}) as r:
            assert r.status == 304
            assert await r.read() == b""
        async with s.head(f"{server}/_sidecar/ui") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    "path",
    [
        "/_sidecar/ui/nope.js",
        "/_sidecar/ui/index.html",  # the page has one address only
        "/_sidecar/ui/..%2Fui.py",
        "/_sidecar/ui/%2E%2E%2F%2E%2E%2Fpyproject.toml",
    ],
)
async def test_unknown_names_are_404_and_nothing_else_is_read(server: str, path: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(server + path) as r:
        assert r.status == 404
        body = await r.json()
        assert body["status"] == 404


async def test_trailing_slash_redirects_relatively(server: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{server}/_sidecar/ui/?index=a&q=b", allow_redirects=False) as r,
    ):
        assert r.status == 301
        # Relative, so a reverse proxy's path prefix is kept.
        assert r.headers["Location"] == "../ui?index=a&q=b"


def test_only_known_file_types_are_loaded(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "app.js").write_text("1")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.js").write_text("x")
    (tmp_path / "sub.css").mkdir()
    files = ui.load_static(tmp_path)
    assert sorted(files) == ["app.js", "index.html"]
    assert files["app.js"].content_type == "text/javascript; charset=utf-8"
    assert ui.load_static(tmp_path / "missing") == {}


def test_the_shipped_page_uses_no_inner_html() -> None:
    """All text from ES goes through textContent; the page never parses strings as HTML."""
    script = (ui.STATIC_DIR / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
