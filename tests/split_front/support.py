"""Requests for the split-front tests: one fresh connection each, from a chosen loopback
source address when given, with the answer's raw bytes (never decompressed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

#: Headers only the sidecar writes: an answer with none of them did not pass through it.
SIDECAR_HEADERS = ("X-Rerank", "X-Request-Id", "Server-Timing")


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def rerank(self) -> str | None:
        return self.headers.get("X-Rerank")

    def sidecar_marks(self) -> list[str]:
        return [h for h in SIDECAR_HEADERS if h in self.headers]


def ndjson(*lines: Any) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def raw_url(url: str, path: str) -> URL:
    """The URL with the path and query as written: never re-encoded on the way out."""
    return URL(url + path, encoded=True)


async def call(
    url: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    data: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    source: str | None = None,
) -> Answer:
    sent = list(headers or [])
    if body is not None:
        data = json.dumps(body).encode()
        sent.append(("Content-Type", "application/json"))
    connector = aiohttp.TCPConnector(local_addr=(source, 0) if source else None, force_close=True)
    async with (
        aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("Accept-Encoding",)
        ) as session,
        session.request(
            method, raw_url(url, path), data=data, headers=sent, allow_redirects=False
        ) as r,
    ):
        return Answer(r.status, r.headers, await r.read())
