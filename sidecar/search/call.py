"""A search as the service sees it (:class:`SearchCall`), and what it answers (a
:data:`Result`): ES's answer to stream back (:class:`Relay`) or a response it wrote
(:class:`Reply`). Either way with the :class:`~sidecar.rerank.outcome.Outcome` for
``X-Rerank``. The handlers build the one and write the other; nothing between them
touches HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDictProxy
from yarl import URL

from sidecar.admission.ledger import client_key
from sidecar.config import HttpTuning
from sidecar.deadline import now
from sidecar.http.body import read_body
from sidecar.http.trace import RequestTrace, trace_of
from sidecar.rerank.outcome import Outcome
from sidecar.rerank.rollout import Client, Rollout
from sidecar.rerank.step import Page
from sidecar.upstream import EsRequest


@dataclass(frozen=True)
class SearchCall:
    """One ``_search`` or ``_msearch`` request, read whole (bounded)."""

    method: str
    rel_url: URL
    headers: CIMultiDictProxy[str]
    #: The body as the client sent it (still encoded); None: the request had none.
    body: bytes | None
    #: The index expression of the path ("" for ``/_search``).
    index: str
    #: When the request arrived, on the deadline's clock.
    arrived: float
    trace: RequestTrace

    #: Who asks: its address behind trusted proxies, and whether it may pick the mode.
    who: Client
    #: What it counts against in the ledger and the pools (its address, an IPv6 one by /64).
    client: str
    #: The body ES gets as "the client's own request" when the client's cannot go as sent
    #: (its ``ext.ubi`` taken out, for the query log); None: the client's bytes.
    sent_body: bytes | None = None

    @classmethod
    async def read(cls, request: web.Request, limits: HttpTuning, rollout: Rollout) -> SearchCall:
        trace = trace_of(request)
        who = rollout.client(request.remote, request.headers)
        return cls(
            request.method,
            request.rel_url,
            request.headers,
            await read_body(request, limits),
            request.match_info.get("index", ""),
            trace.arrived or now(),
            trace,
            who,
            client_key(who.addr),
        )

    @property
    def params(self) -> MultiDictProxy[str]:
        return self.rel_url.query

    @property
    def as_sent(self) -> EsRequest:
        """The client's own request, for ES."""
        if self.sent_body is not None:
            return EsRequest.rewritten(self, self.sent_body)
        return EsRequest.passthrough(self, self.body)


#: Media types ES answers in that are not JSON (``?format=`` or ``Accept``/``Content-Type``).
OTHER_FORMATS = ("yaml", "cbor", "smile")


def indices_of(index: str) -> list[str]:
    return [i for i in index.split(",") if i] if index else []


def other_format(call: SearchCall) -> bool:
    """Whether ES will answer in a format other than JSON: the sidecar cannot rewrite that
    answer, so such a search is passed through (``reason=format``)."""
    fmt = call.params.get("format", "").strip().lower()
    if fmt in OTHER_FORMATS:
        return True
    return any(
        f in call.headers.get(name, "").lower()
        for name in ("Accept", "Content-Type")
        for f in OTHER_FORMATS
    )


@dataclass(frozen=True)
class Relay:
    """Send ``request`` to ES and stream its answer back unchanged."""

    request: EsRequest
    outcome: Outcome


@dataclass(frozen=True)
class Reply:
    """The response to send (ES's status and headers, a body the sidecar wrote or
    cached)."""

    response: web.Response
    outcome: Outcome
    #: Each search as served (tracked by the query log; else empty).
    pages: tuple[Page | None, ...] = ()


Result = Relay | Reply
