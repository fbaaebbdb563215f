"""The few Elasticsearch REST calls the dev runtime makes, over the standard library.

The demo and the ``load`` command ship in the image, so they must not pull in the official
client (a dev dependency): creating an index, bulk-loading, refreshing and counting are four
plain HTTP calls.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any


class ESRequestError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} answered {status}: {body[:300]}")
        self.status = status


class ESRest:
    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ndjson: bytes | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """JSON answer of one request; None for a 404 when ``missing_ok`` or a HEAD."""
        data, ctype = None, "application/json"
        if ndjson is not None:
            data, ctype = ndjson, "application/x-ndjson"
        elif body is not None:
            data = json.dumps(body).encode()
        url = self.url + path
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            if exc.code == 404 and (missing_ok or method == "HEAD"):
                return None
            raise ESRequestError(method, url, exc.code, text) from None
        if method == "HEAD" or not raw.strip():
            return {}
        return json.loads(raw)

    def index_exists(self, index: str) -> bool:
        return self.call("HEAD", f"/{index}") is not None

    def recreate_index(
        self, index: str, mappings: dict[str, Any], settings: dict[str, Any] | None = None
    ) -> None:
        self.call("DELETE", f"/{index}", missing_ok=True)
        body: dict[str, Any] = {"mappings": mappings}
        if settings:
            body["settings"] = settings
        self.call("PUT", f"/{index}", body)

    def bulk_index(
        self, index: str, docs: Iterable[tuple[str, dict[str, Any]]], *, refresh: bool = False
    ) -> int:
        """Index one chunk of ``(id, source)`` pairs; raises if any document failed."""
        lines: list[str] = []
        for doc_id, source in docs:
            lines.append(json.dumps({"index": {"_index": index, "_id": doc_id}}))
            lines.append(json.dumps(source, ensure_ascii=False))
        if not lines:
            return 0
        query = "?refresh=true" if refresh else ""
        answer = self.call("POST", f"/_bulk{query}", ndjson=("\n".join(lines) + "\n").encode())
        items = answer.get("items", [])
        failed = [item for item in items if next(iter(item.values())).get("error")]
        if answer.get("errors") or failed:
            raise RuntimeError(f"{len(failed)} documents failed to load into {index}: {failed[:1]}")
        return len(items)

    def refresh(self, index: str) -> None:
        self.call("POST", f"/{index}/_refresh")

    def count(self, index: str) -> int:
        return int(self.call("GET", f"/{index}/_count")["count"])
