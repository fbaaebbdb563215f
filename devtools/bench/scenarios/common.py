"""Search bodies the scenarios send."""

from __future__ import annotations

import json
from typing import Any

QUERIES = [
    "renew a borrowed book online",
    "reset my account password",
    "history of the printing press",
    "wifi not working in the reading room",
    "children's books about the ocean",
    "how to cite a journal article",
    "refund for a late fee",
    "printer out of toner",
]


def search_body(query: str, *, window: int | None = None, size: int = 10) -> bytes:
    body: dict[str, Any] = {
        "query": {"multi_match": {"query": query, "fields": ["title^2", "body"]}},
        "size": size,
    }
    if window is not None:
        body["rerank"] = {"window": window}
    return json.dumps(body).encode()
