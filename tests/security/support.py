"""Helpers of the security suite: a sidecar in front of the secured ES, clients that connect
from a chosen loopback address, raw-socket exchanges, and the secrets every leak check
looks for."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from devtools.fakes import FaultModel
from sidecar.config import merge
from tests.support.apps import RunningSidecar, running_sidecar
from tests.support.search import base_config
from tests.support.secure_es import SecureES, basic

ALICE = basic("alice")
BOB = basic("bob")
SERVICE = basic("service")
QUERY = {"query": {"match": {"body": "renew library card"}}}

#: Secrets configured on the sidecar; none may appear in any answer or log line.
ES_PASSWORD = "es-own-pw-7f3a9c"
API_TOKEN = "api-token-0b5d21"
UI_TOKEN = "ui-token-9e44c0"
METRICS_TOKEN = "metrics-token-5a1f7e"
ADMIN_TOKEN = "admin-token-c3d8b2"
REMOTE_KEY = "remote-key-61e0f4"
#: A client's credential, which reaches ES (its owner's business) but nothing else.
CLIENT_SECRET = basic("alice", "alice-pw-d41c7e")
SECRETS = (ES_PASSWORD, API_TOKEN, UI_TOKEN, METRICS_TOKEN, ADMIN_TOKEN, REMOTE_KEY)


def sidecar_config(es: SecureES, model: FaultModel, /, **over: Any) -> dict[str, Any]:
    return merge(base_config(es.url, model={"name": model.url}), over)


@contextlib.asynccontextmanager
async def sidecar(
    es: SecureES, model: FaultModel, /, wait_model: bool = True, **over: Any
) -> AsyncIterator[RunningSidecar]:
    async with running_sidecar(sidecar_config(es, model, **over), wait_model=wait_model) as sc:
        yield sc


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def rerank(self) -> str:
        return self.headers.get("X-Rerank", "")


async def call(
    url: str,
    method: str = "GET",
    path: str = "/",
    *,
    source: str | None = None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    json_body: Any = None,
    data: bytes | None = None,
    decompress: bool = True,
) -> Answer:
    """One request on a fresh connection, from ``source`` (a loopback address) if given."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0) if source else None, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector,
        auto_decompress=decompress,
        skip_auto_headers=("Accept-Encoding",),
    ) as s:
        sent = list(headers.items() if isinstance(headers, dict) else headers or [])
        if json_body is not None:
            data = json.dumps(json_body).encode()
            if not any(k.lower() == "content-type" for k, _ in sent):
                sent.append(("Content-Type", "application/json"))
        kwargs: dict[str, Any] = {"headers": sent}
        if data is not None:
            # A BytesIO is sent in pieces (aiohttp warns about large bytes bodies).
            kwargs["data"] = io.BytesIO(data) if len(data) > 1 << 20 else data
        async with s.request(method, url + path, allow_redirects=False, **kwargs) as r:
            return Answer(r.status, dict(r.headers), await r.read())


async def raw(url: str, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Raw bytes on a fresh connection; everything the server sends until it closes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        chunks: list[bytes] = []
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(read_timeout):
                while chunk := await reader.read(65536):
                    chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_of(answer: bytes) -> int:
    """The status of the first response in raw bytes (0 when there is none)."""
    line = answer.split(b"\r\n", 1)[0].split(b" ")
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


def leaks(text: str | bytes, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    data = text if isinstance(text, str) else text.decode("utf-8", "replace")
    return [s for s in secrets if s in data]
