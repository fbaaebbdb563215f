"""The query log on the search path: what a search's ``ext.ubi`` says, and the
``ubi_queries`` document of each page served.

A search may carry ``ext.ubi`` as UBI clients send it (``query_id``, ``client_id``,
``user_query``, ``application``, ``object_id_field``, ``query_attributes``). It is taken out
of the body before ES sees it (ES has no UBI: it would refuse the unknown ``ext``). Without a
``query_id`` the sidecar makes one; without a ``client_id`` one is derived from the client's
address and identity headers with a keyed hash (HMAC-SHA-256), so no address or credential
is ever stored. The user's query is kept, hashed with the same key, or dropped
(``ubi.query_text``).

Each page served is one document: the object ids of its hits in the order served, and in
``query_attributes`` what the sidecar knows (the client's own attributes are kept; the
sidecar's names are prefixed ``rerank_``, so a client cannot write its own cohort).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sidecar.config import UbiConfig
from sidecar.errors import IllegalArgument
from sidecar.rerank.identity import IdentityRule
from sidecar.rerank.outcome import Outcome
from sidecar.rerank.plan import Tracked
from sidecar.rerank.step import Page
from sidecar.ubi.log import UbiLog
from sidecar.ubi.report import FROM, MODE, MODEL, OUTCOME, RULE, TEAMS, K
from sidecar.ubi.schema import SHORT, utc

_STRINGS = ("query_id", "client_id", "application", "object_id_field")
#: The prefix of the query ids this sidecar makes.
GENERATED = "sidecar-"


@dataclass(frozen=True)
class Ask:
    """What a search's ``ext.ubi`` asked for, completed by the sidecar."""

    query_id: str
    client_id: str
    user_query: str | None = None
    application: str | None = None
    object_id_field: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    #: The client sent the ``query_id`` (else the sidecar made it).
    given: bool = True

    @property
    def tracked(self) -> Tracked:
        return Tracked(self.query_id, self.object_id_field, self.given)


@dataclass(frozen=True)
class Served:
    """How a page was served: the rollout's mode and rule, and the model."""

    mode: str
    rule: str
    model: str


class UbiSearch:
    def __init__(self, config: UbiConfig, log: UbiLog, identity: IdentityRule) -> None:
        self.config = config
        self.log = log
        self._identity = identity
        if config.client_id_key_file is not None:
            self._key = config.client_id_key_file.read_bytes().strip()
        else:
            self._key = secrets.token_bytes(32)

    def take(self, body: Any, client: str, headers: Any) -> tuple[Any, Ask]:
        """``body`` without ``ext.ubi`` (a copy, the client's is kept), and what it asked
        for. Raises IllegalArgument (400) for an ``ext.ubi`` that is not as UBI writes it."""
        raw: Any = None
        if isinstance(body, dict) and isinstance(body.get("ext"), dict) and "ubi" in body["ext"]:
            ext = {k: v for k, v in body["ext"].items() if k != "ubi"}
            raw = body["ext"]["ubi"]
            body = {k: v for k, v in body.items() if k != "ext"} | ({"ext": ext} if ext else {})
        return body, self._ask(raw, client, headers)

    def _ask(self, raw: Any, client: str, headers: Any) -> Ask:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise IllegalArgument("[ext.ubi] must be an object")
        for key in _STRINGS:
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > SHORT):
                raise IllegalArgument(f"[ext.ubi.{key}] must be a string of {SHORT} at most")
        user_query = raw.get("user_query")
        if user_query is not None and not isinstance(user_query, str):
            raise IllegalArgument("[ext.ubi.user_query] must be a string")
        query_id = raw.get("query_id")
        return Ask(
            query_id=query_id or GENERATED + uuid.uuid4().hex,
            client_id=raw.get("client_id") or self._client_id(client, headers),
            user_query=user_query,
            application=raw.get("application"),
            object_id_field=raw.get("object_id_field"),
            attributes=_attributes(raw.get("query_attributes")),
            # An id this sidecar made and the client sent back (the next page of a search
            # whose first page had none) counts as not given: the interleaving's coins then
            # stay those of the first page, which were the query's.
            given=bool(query_id) and not str(query_id).startswith(GENERATED),
        )

    def _client_id(self, client: str, headers: Any) -> str:
        material = f"{client}\n{self._identity.digest(headers)}".encode()
        return hmac.new(self._key, material, hashlib.sha256).hexdigest()[:32]

    def query_text(self, text: str) -> str | None:
        if self.config.query_text == "drop":
            return None
        if self.config.query_text == "hash":
            return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:32]
        return text

    def record(
        self, ask: Ask, query_text: str, served: Served, page: Page | None, outcome: Outcome
    ) -> None:
        """Queue the ``ubi_queries`` document of one page (never waits, never raises);
        ``page`` None: its answer was not read (streamed: too large, or not JSON)."""
        attributes: dict[str, Any] = {**ask.attributes, MODE: served.mode, RULE: served.rule}
        attributes[OUTCOME] = (page.outcome if page is not None else outcome).header
        ids: list[str] = []
        if page is not None:
            ids = page.served.ids
            attributes[FROM] = str(page.served.start)
            if page.k:
                attributes |= {K: str(page.k), MODEL: served.model}
            if page.served.teams is not None:
                attributes[TEAMS] = page.served.teams
        document: dict[str, Any] = {
            "query_id": ask.query_id,
            "client_id": ask.client_id,
            "query_response_id": uuid.uuid4().hex,
            "query_response_hit_ids": ids,
            "timestamp": utc(datetime.now(UTC)),
            "query_attributes": attributes,
        }
        text = self.query_text(ask.user_query or query_text)
        if text is not None:
            document["user_query"] = text
        application = ask.application or self.config.application
        if application:
            document["application"] = application
        if ask.object_id_field:
            document["object_id_field"] = ask.object_id_field
        self.log.add(self.config.queries_index, document)


def _attributes(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise IllegalArgument("[ext.ubi.query_attributes] must be an object")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, dict | list) or value is None:
            raise IllegalArgument(f"[ext.ubi.query_attributes.{key}] must be a string")
        out[str(key)] = str(value)
    return out
