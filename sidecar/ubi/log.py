"""Writing UBI documents to Elasticsearch in the background, bounded in bytes.

A search never waits for its log entry and never fails because of it: :meth:`UbiLog.add`
puts the document, already serialized, in a queue bounded in bytes and returns; a
background task writes what is queued with ``_bulk``, in batches, retrying with a doubling
pause while ES is down, slow or refusing. When the queue is full, or a batch has failed for
:data:`GIVE_UP_S`, entries are dropped, and every drop is counted by reason (a metric and a
line in ``/_sidecar/ready``). The indices are created at start, with their mappings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sidecar.jsonutil import dumps, loads
from sidecar.ubi.schema import EVENTS_MAPPING, QUERIES_MAPPING

log = logging.getLogger("sidecar.ubi")

#: Documents in one ``_bulk`` at most.
BATCH_DOCS = 500
#: The longest a batch waits for more documents once there is one.
FLUSH_S = 0.5
#: Pauses between tries of a failing batch: doubling from the first to the last.
FIRST_PAUSE_S, LAST_PAUSE_S = 0.5, 30.0
#: A batch that has failed for this long is dropped (counted): the queue must move on.
GIVE_UP_S = 120.0

#: (method, path, body, content type) -> (status, body). The sidecar's own requests to ES.
Send = Callable[[str, str, bytes | None, str], Awaitable[tuple[int, bytes]]]


class DropReason:
    QUEUE_FULL = "queue_full"
    ES_UNAVAILABLE = "es_unavailable"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Entry:
    index: str
    #: The document's ``_id``, chosen here: a batch tried again after a timeout (ES may
    #: have written it) overwrites what it wrote instead of writing it twice.
    doc_id: str
    line: bytes


class UbiLog:
    def __init__(self, send: Send, *, max_bytes: int) -> None:
        self._send = send
        self.max_bytes = max_bytes
        #: Whether the cluster is OpenSearch (asked once, when an index is first created).
        self._opensearch: bool | None = None
        self._queue: deque[Entry] = deque()
        self.queued_bytes = 0
        self.written = 0
        self.dropped: Counter[str] = Counter()
        self._more = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._created: set[str] = set()
        self._kinds: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None
        #: The last failure writing to ES, for /_sidecar/ready (None: the last write worked).
        self.last_error: str | None = None
        #: Set once the indices exist (made here, or found).
        self.prepared = asyncio.Event()

    def index_for(self, index: str, events: bool) -> None:
        """``index`` holds events (or queries): its mapping when it is created."""
        self._kinds[index] = events

    def add(self, index: str, document: dict[str, Any]) -> bool:
        """Queue ``document`` for ``index``; False (and counted) when the queue is full."""
        line = dumps(document)
        size = len(line)
        if self.queued_bytes + size > self.max_bytes:
            self.dropped[DropReason.QUEUE_FULL] += 1
            return False
        self._queue.append(Entry(index, uuid.uuid4().hex, line))
        self.queued_bytes += size
        self._empty.clear()
        self._more.set()
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def flushed(self) -> None:
        """Until the queue is empty: everything queued has been written or dropped."""
        await self._empty.wait()

    async def _prepare(self) -> None:
        """Create the indices, with their mappings, before anything is written: a frontend
        that writes events straight to ES must find the mapping, not make a dynamic one (a
        text ``query_id`` the report could neither match nor sort)."""
        pause = FIRST_PAUSE_S
        while True:
            try:
                for index in sorted(self._kinds.keys() - self._created):
                    await self._create(index)
            except Exception as exc:  # ES down at start: entries queue meanwhile (bounded)
                self.last_error = f"creating the UBI indices: {type(exc).__name__}: {exc}"
                await asyncio.sleep(pause)
                pause = min(pause * 2, LAST_PAUSE_S)
                continue
            self.last_error = None
            self.prepared.set()
            return

    async def _run(self) -> None:
        await self._prepare()
        while True:
            await self._more.wait()
            await asyncio.sleep(FLUSH_S)  # let a batch gather: fewer, larger bulks
            batch = [self._queue[i] for i in range(min(BATCH_DOCS, len(self._queue)))]
            if not batch:
                self._more.clear()
                self._empty.set()
                continue
            await self._write(batch)
            for _ in batch:
                entry = self._queue.popleft()
                self.queued_bytes -= len(entry.line)
            if not self._queue:
                self._more.clear()
                self._empty.set()

    async def _write(self, batch: list[Entry]) -> None:
        """Write ``batch``, trying again with a doubling pause; after :data:`GIVE_UP_S`
        of failures it is dropped."""
        pause, waited = FIRST_PAUSE_S, 0.0
        while True:
            error = await self._try(batch)
            if error is None:
                self.last_error = None
                return
            self.last_error = error
            if waited >= GIVE_UP_S:
                self.dropped[DropReason.ES_UNAVAILABLE] += len(batch)
                log.warning("UBI: dropped %d entries after %.0f s (%s)", len(batch), waited, error)
                return
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, LAST_PAUSE_S)

    async def _try(self, batch: list[Entry]) -> str | None:
        """One ``_bulk`` of ``batch``: None when ES took it (entries it refused are counted),
        or what went wrong."""
        try:
            for index in {e.index for e in batch} - self._created:
                await self._create(index)
            body = b"".join(
                dumps({"index": {"_index": e.index, "_id": e.doc_id}}) + b"\n" + e.line + b"\n"
                for e in batch
            )
            status, answer = await self._send("POST", "/_bulk", body, "application/x-ndjson")
        except Exception as exc:  # the sidecar's own write: whatever it was, it is retried
            return f"{type(exc).__name__}: {exc}"
        if status != 200:
            return f"Elasticsearch answered {status} to _bulk"
        refused = _refused(answer)
        if refused:
            self.dropped[DropReason.REJECTED] += refused
        self.written += len(batch) - refused
        return None

    async def _create(self, index: str) -> None:
        """Create ``index`` with its mapping unless it exists (another replica, or the
        OpenSearch plugin, may have made it)."""
        mapping = EVENTS_MAPPING if self._kinds.get(index) else QUERIES_MAPPING
        if self._opensearch is None:
            status, root = await self._send("GET", "/", None, "application/json")
            self._opensearch = status == 200 and b'"opensearch"' in root
        if self._opensearch:
            mapping = _for_opensearch(mapping)
        settings = {"number_of_shards": 1, "auto_expand_replicas": "0-1"}
        body = dumps({"settings": settings, "mappings": mapping})
        status, answer = await self._send("PUT", f"/{index}", body, "application/json")
        if status == 200 or b"resource_already_exists_exception" in answer:
            self._created.add(index)
            return
        raise RuntimeError(f"creating {index} answered {status}")

    def state(self) -> dict[str, Any]:
        """For /_sidecar/ready: what is queued, written and dropped."""
        return {
            "queued_bytes": self.queued_bytes,
            "written": self.written,
            "dropped": dict(self.dropped),
            "last_error": self.last_error,
        }


def _refused(answer: bytes) -> int:
    try:
        body = loads(answer)
    except ValueError:
        return 0
    if not isinstance(body, dict) or not body.get("errors"):
        return 0
    items = body.get("items") or []
    return sum(1 for item in items if any("error" in v for v in item.values()))


def _for_opensearch(mapping: dict[str, Any]) -> dict[str, Any]:
    """OpenSearch calls Elasticsearch's ``flattened`` type ``flat_object``."""
    text = dumps(mapping).replace(b'"flattened"', b'"flat_object"')
    converted: dict[str, Any] = loads(text)
    return converted
