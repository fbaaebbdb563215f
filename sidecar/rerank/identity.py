"""Who is asking, as far as Elasticsearch (or a security plugin in front of it) can tell:
the request headers that carry an identity, read the same way for every cache.

A cache entry is shared only between requests whose identity material is byte-for-byte the
same. Every value of every identity header counts, whatever its scheme (an ``Authorization``
the sidecar has never heard of is keyed like any other), so the only way to get another
user's entry is to send that user's credentials.

Built in (see docs/security.md for where each comes from):

* ``Authorization`` (Basic, Bearer, ApiKey, Negotiate, any other scheme) and ``Cookie``;
* Elasticsearch: ``es-security-runas-user`` (run-as), ``es-secondary-authorization``,
  ``es-client-authentication`` (JWT realm client credentials);
* OpenSearch security: ``x-proxy-user``, ``x-proxy-roles`` and ``x-proxy-ext-*`` (proxy and
  extended-proxy authentication, default header names), ``opendistro_security_impersonate_as``
  (impersonation), ``securitytenant`` / ``security_tenant`` (tenant selection).

Deployments whose proxy or plugin uses other names add them with
``rerank.extra_identity_headers`` (a trailing ``*`` matches a prefix).

The identity-scoped score cache reads the caller's digest from :data:`CALLER`, which the
request middleware sets once per request (shadow reranks, started from the request, inherit
it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Protocol

IDENTITY_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "es-security-runas-user",
        "es-secondary-authorization",
        "es-client-authentication",
        "x-proxy-user",
        "x-proxy-roles",
        "opendistro_security_impersonate_as",
        "securitytenant",
        "security_tenant",
    }
)
IDENTITY_PREFIXES = ("x-proxy-ext-",)

#: Request headers that change the bytes of ES's answer: the response cache keys them too,
#: so a hit is never served in a representation the client did not ask for.
REPRESENTATION_HEADERS = ("accept", "accept-encoding", "content-type", "elastic-api-version")

#: The caller's identity digest, for the identity-scoped score cache ("" outside a request).
CALLER: ContextVar[str] = ContextVar("sidecar_caller", default="")


class Headers(Protocol):
    def items(self) -> Iterable[tuple[str, str]]: ...


class IdentityRule:
    """Which headers are identity: the built-in ones plus ``extra`` (names, or prefixes
    ending in ``*``; lower case)."""

    def __init__(self, extra: Sequence[str] = ()) -> None:
        self.names = IDENTITY_HEADERS | {e for e in extra if not e.endswith("*")}
        self.prefixes = IDENTITY_PREFIXES + tuple(e[:-1] for e in extra if e.endswith("*"))

    def is_identity(self, name: str) -> bool:
        lname = name.lower()
        return lname in self.names or lname.startswith(self.prefixes)

    def material(self, headers: Headers) -> list[tuple[str, str]]:
        """Every identity header line, name lower-cased, in the order sent (a stable sort by
        name keeps the order of repeated lines, which a plugin may read as a list)."""
        found = [(n.lower(), v) for n, v in headers.items() if self.is_identity(n)]
        return sorted(found, key=lambda item: item[0])

    def digest(self, headers: Headers) -> str:
        return digest_parts(part for item in self.material(headers) for part in item)


def digest_parts(parts: Iterable[str | bytes]) -> str:
    """SHA-256 over length-prefixed parts: moving a byte across a boundary changes it."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def representation(headers: Headers) -> list[tuple[str, str]]:
    found = [(n.lower(), v) for n, v in headers.items() if n.lower() in REPRESENTATION_HEADERS]
    return sorted(found, key=lambda item: item[0])
