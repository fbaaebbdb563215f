"""What Elasticsearch receives, decided in one place.

An :class:`EsRequest` is exactly what goes on the wire: method, origin-form path and query,
headers and body. It is built from the client's request by one of two rules:

* :meth:`EsRequest.passthrough`: the client's request unchanged, less hop-by-hop headers;
* :meth:`EsRequest.rewritten`: the documented rerank rewrites (a new body, URL parameters
  the plan moved into it or set). The body is new, so its length goes; it is compressed
  again as the client compressed its own (``Content-Encoding`` stays), and every other
  end-to-end header (``Content-Type`` and ``Accept`` included, with any
  ``compatible-with`` version) is the client's, byte for byte. ES's media-type checks
  (``RestCompatibleVersionHelper``: both versioned or neither; its CSRF refusal of
  ``text/plain``) then answer exactly as they would without the sidecar.

The URL is always the configured base plus the request's *relative* path and query, so an
absolute-URI request line or a ``Host`` header can never pick another host.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote_plus

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sidecar.encoding import encode, readable

#: RFC 9110 7.6.1 hop-by-hop fields, plus Proxy-* and Host (the client sets the upstream's).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)

Body = bytes | AsyncIterable[bytes] | None


class Incoming(Protocol):
    """What a request from a client says (an aiohttp request is one)."""

    @property
    def method(self) -> str: ...

    @property
    def rel_url(self) -> URL: ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...


def end_to_end_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """Copy ``headers`` without hop-by-hop fields (and the ones ``Connection`` lists)."""
    extra: set[str] = set()
    for value in headers.getall("Connection", []):
        extra.update(token.strip().lower() for token in value.split(",") if token.strip())
    out: CIMultiDict[str] = CIMultiDict()
    items: Iterable[tuple[str, str]] = headers.items()
    for name, value in items:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in extra:
            continue
        out.add(name, value)
    return out


def upstream_url(base: URL, path_qs: str) -> URL:
    """The URL on the configured ES for an origin-form path and query string."""
    if not path_qs.startswith("/"):
        path_qs = "/" + path_qs
    return URL(str(base).rstrip("/") + path_qs, encoded=True)


def _path_qs_without(
    request: Incoming, drop: Sequence[str], add: Sequence[tuple[str, str]] = ()
) -> str:
    """The raw path and query less the ``drop`` parameters (and any that ``add`` sets),
    with ``add`` appended; every other parameter keeps its bytes (``?pretty`` stays
    ``?pretty``, not ``?pretty=``)."""
    raw = request.rel_url.raw_path_qs
    if not drop and not add:
        return raw
    gone = set(drop) | {name for name, _ in add}
    path, _, query = raw.partition("?")
    kept = [p for p in query.split("&") if p and unquote_plus(p.partition("=")[0]) not in gone]
    kept += [f"{quote(k, safe='')}={quote(v, safe=',*')}" for k, v in add]
    return path + ("?" + "&".join(kept) if kept else "")


@dataclass(frozen=True)
class EsRequest:
    method: str
    #: Origin-form path and query, still percent-encoded as the client sent it.
    path_qs: str
    headers: CIMultiDict[str]
    body: Body

    @classmethod
    def passthrough(cls, request: Incoming, body: Body) -> EsRequest:
        return cls(
            request.method, request.rel_url.raw_path_qs, end_to_end_headers(request.headers), body
        )

    @classmethod
    def rewritten(
        cls,
        request: Incoming,
        body: bytes | None,
        drop_params: Sequence[str] = (),
        set_params: Sequence[tuple[str, str]] = (),
    ) -> EsRequest:
        """The client's request with a body the sidecar wrote (None: the client's request
        had none, and gets none), ``drop_params`` taken out of the query string (the plan
        moved them into that body) and ``set_params`` set in it."""
        headers = end_to_end_headers(request.headers)
        if body is not None:
            # The new body has its own length, and the client's encoding.
            headers.popall("Content-Length", None)
            encoding = headers.get("Content-Encoding")
            if encoding and readable(encoding):
                body = encode(body, encoding)
            else:
                headers.popall("Content-Encoding", None)
        path_qs = _path_qs_without(request, drop_params, set_params)
        return cls(request.method, path_qs, headers, body)
