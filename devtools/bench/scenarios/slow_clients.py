"""Scenario 10: slow clients hold connections while ordinary clients search.

The stub ES answers every path containing ``huge`` with a valid search answer of
``HUGE_BYTES`` bytes, streamed; the model is the fault server in ``ok`` mode (word
overlap, cheap), so what is measured is the sidecar's connection handling. The sidecar runs
with its defaults except the ES pools, scaled down (``es.max_connections``
``PASS_POOL``, ``tuning.es.search_connections`` ``SEARCH_POOL``) so that a few dozen slow
clients outnumber each pool; transfer deadlines and minimum rates are the defaults.

Slow clients are raw loopback sockets (receive buffer ``RCVBUF`` bytes):

* never-reading pass-through: ``GET /huge/_doc/1``, answer never read;
* never-reading search: ``POST /huge/_search`` sorted by ``_doc`` (not reranked, so ES's
  answer is streamed through the search pool), answer never read;
* drip: ``POST /_bulk`` with a ``Content-Length`` of ``DRIP_BYTES``, one byte a second.

Ordinary clients meanwhile: ``SEARCHERS`` clients searching (reranked, window 20) and one
client of pass-through reads (``GET /bench/_doc/1``), each paced at ``CLIENT_RATE``/s.
``/_sidecar/ready`` is polled every 0.25 s. Each round runs the ordinary clients without and
with the slow clients, in alternating order; a segment with slow clients opens them all,
waits ``SETTLE_S``, runs the ordinary clients, then closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from devtools.bench.results import Goal, Section
from devtools.bench.scenarios.common import QUERIES, search_body
from devtools.bench.scenarios.overload import Req, Segment, paced
from devtools.bench.servers import Bench
from devtools.procfs import rss_bytes
from sidecar.config import HttpTuning

HUGE_BYTES = 16 * 1024 * 1024
PASS_POOL = 16
SEARCH_POOL = 8
RCVBUF = 4096
DRIP_BYTES = 100_000
SEARCHERS = 3
CLIENT_RATE = 20.0
SETTLE_S = 1.0
READY_POLL_S = 0.25
HTTP_DEFAULTS = HttpTuning()


@dataclass
class SlowClient:
    kind: str
    request: bytes
    drip: bool = False
    sock: socket.socket | None = None
    connected: bool = False
    #: Seconds after the segment's start when the sidecar cut it off (drip: a send
    #: failed); None while it seemed open.
    cut_s: float | None = None
    #: After the segment: "cut" (EOF or reset), "open" (nothing to read, still open) or
    #: "streaming" (data still arriving).
    final: str = ""
    dripped: int = 0


def slow_clients(never_pass: int, never_search: int, drip: int) -> list[SlowClient]:
    host = b"Host: 127.0.0.1\r\n"
    search = b'{"query": {"match_all": {}}, "sort": ["_doc"], "size": 10000}'
    out = [
        SlowClient("never-reading pass-through", b"GET /huge/_doc/1 HTTP/1.1\r\n" + host + b"\r\n")
        for _ in range(never_pass)
    ]
    out += [
        SlowClient(
            "never-reading search",
            b"POST /huge/_search HTTP/1.1\r\n"
            + host
            + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(search)).encode()
            + b"\r\n\r\n"
            + search,
        )
        for _ in range(never_search)
    ]
    out += [
        SlowClient(
            "drip _bulk (1 byte/s)",
            b"POST /_bulk HTTP/1.1\r\n"
            + host
            + b"Content-Type: application/x-ndjson\r\nContent-Length: "
            + str(DRIP_BYTES).encode()
            + b"\r\n\r\n",
            drip=True,
        )
        for _ in range(drip)
    ]
    return out


#: Where the slow clients connect from.
SLOW_ADDRESS = "127.0.0.2"


async def open_slow(client: SlowClient, port: int) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    client.sock = sock
    try:
        # The slow clients are one client of their own (another loopback address): the
        # sidecar shares its pools per client, and the ordinary traffic, from 127.0.0.1, is
        # the others whose errors the scenario counts.
        sock.bind((SLOW_ADDRESS, 0))
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, client.request)
        client.connected = True
    except OSError:
        client.final = "refused"


async def drip(client: SlowClient, start: float) -> None:
    """One byte a second until the sidecar stops taking them (or the task is cancelled)."""
    loop = asyncio.get_running_loop()
    assert client.sock is not None
    while client.dripped < DRIP_BYTES:
        await asyncio.sleep(1.0)
        try:
            await asyncio.wait_for(loop.sock_sendall(client.sock, b" "), 5)
        except (OSError, TimeoutError):
            client.cut_s = loop.time() - start
            return
        client.dripped += 1


def final_state(client: SlowClient) -> str:
    """Whether the sidecar closed the connection: read what is there without waiting."""
    sock = client.sock
    if sock is None or not client.connected:
        return client.final or "not connected"
    sock.setblocking(False)
    got = 0
    for _ in range(512):
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return "streaming" if got else "open"
        except OSError:
            return "cut"
        if not data:
            return "cut"
        got += len(data)
    return "streaming"


@dataclass
class Probe:
    statuses: Counter[int] = field(default_factory=Counter)
    bad_at: list[float] = field(default_factory=list)
    max_rss: int = 0

    @property
    def polls(self) -> int:
        return sum(self.statuses.values())


async def probe_ready(url: str, pid: int, probe: Probe, start: float) -> None:
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(url + "/_sidecar/ready") as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            probe.statuses[status] += 1
            if status != 200:
                probe.bad_at.append(loop.time() - start)
            with contextlib.suppress(OSError, RuntimeError):
                probe.max_rss = max(probe.max_rss, rss_bytes(pid))
            await asyncio.sleep(READY_POLL_S)


def ordinary_requests() -> tuple[list[Req], list[Req]]:
    searches = [
        Req("/bench/_search", search_body(f"{q} {i}", window=20, size=10), kind="search")
        for i, q in enumerate(QUERIES * 4)
    ]
    reads = [Req("/bench/_doc/1", b"", kind="plain", method="GET")]
    return searches, reads


@dataclass
class Outcome:
    searches: Segment
    reads: Segment
    probe: Probe
    slow: list[SlowClient] = field(default_factory=list)


async def segment(
    url: str, port: int, pid: int, duration_s: float, slow: list[SlowClient]
) -> Outcome:
    loop = asyncio.get_running_loop()
    start = loop.time()
    probe = Probe()
    prober = asyncio.create_task(probe_ready(url, pid, probe, start))
    drips: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(open_slow(c, port) for c in slow))
        drips = [asyncio.create_task(drip(c, start)) for c in slow if c.drip and c.connected]
        if slow:
            await asyncio.sleep(SETTLE_S)
        searches, reads = ordinary_requests()
        clients = math.ceil(CLIENT_RATE * 2)
        results = await asyncio.gather(
            *(
                paced(url, searches, clients=clients, rate=CLIENT_RATE, duration_s=duration_s)
                for _ in range(SEARCHERS)
            ),
            paced(url, reads, clients=clients, rate=CLIENT_RATE, duration_s=duration_s),
        )
    finally:
        for t in drips:
            t.cancel()
        await asyncio.gather(*drips, return_exceptions=True)
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
        for c in slow:
            c.final = final_state(c)
            if c.sock is not None:
                c.sock.close()
    search_seg = Segment("searches")
    for seg in results[:SEARCHERS]:
        search_seg.merge(seg)
    search_seg.wall_s /= SEARCHERS
    offset = SETTLE_S if slow else 0.0
    for seg in results:
        for s in seg.samples:
            s.sent_s += offset
    return Outcome(search_seg, results[-1], probe, slow)


def counts() -> tuple[int, int, int]:
    """Slow clients of each kind: never-reading pass-through, never-reading searches,
    drips. The pass-through holders (never-reading and drips) outnumber the pass-through
    pool, the never-reading searches the search pool."""
    return PASS_POOL, SEARCH_POOL + 4, PASS_POOL // 2


def variants() -> list[tuple[str, tuple[int, int, int]]]:
    """The segments of a round: no slow clients, each kind of holder alone, all of them."""
    never_pass, never_search, drips = counts()
    return [
        ("none", (0, 0, 0)),
        ("pass-through holders", (never_pass, 0, drips)),
        ("search holders", (0, never_search, 0)),
        ("all", (never_pass, never_search, drips)),
    ]


async def measure(b: Bench, url: str, port: int, pid: int, es_url: str) -> dict[str, Outcome]:
    async with aiohttp.ClientSession() as session:
        fault = {"mode": "huge", "only": "huge", "huge_bytes": HUGE_BYTES}
        async with session.post(es_url + "/_fault", json=fault) as resp:
            await resp.read()
    rounds = b.scale(2, 1)
    duration = float(b.scale(45, 12))
    out: dict[str, Outcome] = {}
    for r in range(rounds):
        order = variants() if r % 2 == 0 else variants()[::-1]
        for name, (never_pass, never_search, drips) in order:
            slow = slow_clients(never_pass, never_search, drips)
            got = await segment(url, port, pid, duration, slow)
            out[name] = _merge(out.get(name), got)
            # Let the sidecar notice the closed sockets before the next segment.
            await asyncio.sleep(2.0)
    return {name: out[name] for name, _ in variants()}


def _merge(into: Outcome | None, out: Outcome) -> Outcome:
    if into is None:
        return out
    into.searches.merge(out.searches)
    into.reads.merge(out.reads)
    into.probe.statuses.update(out.probe.statuses)
    into.probe.bad_at += out.probe.bad_at
    into.probe.max_rss = max(into.probe.max_rss, out.probe.max_rss)
    into.slow += out.slow
    return into


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def error_times(seg: Segment) -> str:
    bad = sorted(s.sent_s for s in seg.samples if not 200 <= s.status < 300)
    if not bad:
        return "—"
    statuses = dict(Counter(s.status for s in seg.samples if not 200 <= s.status < 300))
    return f"{len(bad)} ({statuses}), sent {bad[0]:.1f}–{bad[-1]:.1f} s into the segment"


def _not_ready(probe: Probe) -> int:
    return sum(n for s, n in probe.statuses.items() if s != 200)


def run(b: Bench) -> Section:
    never_pass, never_search, drips = counts()
    sec = Section(
        10,
        f"Slow clients: {never_pass + never_search} never-reading and {drips} dripping "
        "connections beside ordinary clients",
    )
    es_url, _ = b.start_fake("es-stub-slow", "es", "--hits", "20")
    model_url, _ = b.start_fake("model-ok", "model", "--mode", "ok")
    sc = b.sidecar(
        "slow-clients",
        es_url,
        model_url + "/v1/rerank",
        {
            "rerank": {"cache": {"enabled": False}},
            "es": {"max_connections": PASS_POOL},
            "tuning": {"es": {"search_connections": SEARCH_POOL}},
        },
    )
    t0 = time.perf_counter()
    outcomes = asyncio.run(measure(b, sc.url, sc.port, sc.proc.pid, es_url))
    seconds = time.perf_counter() - t0
    segment_s = b.scale(45, 12)
    lines = [
        f"Pools: es.max_connections {PASS_POOL}, tuning.es.search_connections {SEARCH_POOL} "
        "(scaled "
        f"down from the defaults); slow clients: {never_pass} never-reading pass-through, "
        f"{never_search} never-reading searches, {drips} dripping `_bulk` bodies; ES answers "
        f"of {HUGE_BYTES // (1024 * 1024)} MiB for them. Transfer settings as served: "
        f"tuning.http.min_transfer_bytes_per_s {HTTP_DEFAULTS.min_transfer_bytes_per_s}, "
        f"tuning.http.transfer_grace_s {HTTP_DEFAULTS.transfer_grace_s}, "
        f"tuning.http.client_read_timeout_s {HTTP_DEFAULTS.client_read_timeout_s}. Segments of "
        f"{segment_s} s of ordinary traffic ({SEARCHERS} searching clients and one "
        f"pass-through client, {CLIENT_RATE:.0f} requests/s each), {SETTLE_S:.0f} s after "
        f"the slow clients connected; {seconds:.0f} s in all.",
        "",
        "| slow clients | ordinary traffic | requests | non-2xx or no answer | when | "
        "p50 ms | p99 ms | /_sidecar/ready polls | ready not 200 | sidecar RSS max MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, out in outcomes.items():
        probe = out.probe
        not_ready = _not_ready(probe)
        for label, seg in (("searches (reranked)", out.searches), ("pass-through", out.reads)):
            lines.append(
                f"| {name} | {label} | {seg.n} | {seg.errors} | {error_times(seg)} | "
                f"{_ms(seg.pct(50))} | {_ms(seg.pct(99))} | {probe.polls} | "
                f"{not_ready}{f' {dict(probe.statuses)}' if not_ready else ''} | "
                f"{probe.max_rss / 2**20:.0f} |"
            )
    lines += [
        "",
        "| segment | slow client | connections | at the segment's end | drip cut at |",
        "|---|---|---|---|---|",
    ]
    for name, out in outcomes.items():
        kinds: dict[str, Counter[str]] = {}
        cuts: dict[str, list[float]] = {}
        for c in out.slow:
            kinds.setdefault(c.kind, Counter())[c.final] += 1
            if c.cut_s is not None:
                cuts.setdefault(c.kind, []).append(c.cut_s)
        for kind, states in kinds.items():
            times = sorted(cuts.get(kind, []))
            when = f"{times[0]:.0f}–{times[-1]:.0f} s" if times else "—"
            lines.append(
                f"| {name} | {kind} | {sum(states.values())} | "
                f"{', '.join(f'{k} {v}' for k, v in sorted(states.items()))} | {when} |"
            )
    lines += [
        "",
        "'at the segment's end': cut = the sidecar had closed it (EOF or reset); open = "
        "still open, nothing to read; streaming = still open and data arriving. 'drip cut "
        "at': seconds after the segment's start when a one-byte send failed.",
    ]
    sec.body += lines
    held, base = outcomes["all"], outcomes["none"]
    others = held.searches.errors + held.reads.errors
    total = held.searches.n + held.reads.n
    ok = others == 0 and total > 0
    per_variant = "; ".join(
        f"{name}: searches {o.searches.errors}/{o.searches.n}, pass-through "
        f"{o.reads.errors}/{o.reads.n}"
        for name, o in outcomes.items()
    )
    sec.goals.append(
        Goal(
            "10 slow clients",
            "others' error rate 0",
            f"{others}/{total} ({others / total:.1%}); searches {held.searches.errors}, "
            f"pass-through {held.reads.errors}"
            if total
            else "no ordinary request sent",
            ok,
            ""
            if ok
            else f"errors per segment: {per_variant}; with all slow clients, searches: "
            f"{error_times(held.searches)}; pass-through: {error_times(held.reads)}",
        )
    )
    probe = held.probe
    not_ready = _not_ready(probe)
    ok_r = not_ready == 0 and probe.polls > 0 and _not_ready(base.probe) == 0
    bad = sorted(probe.bad_at)
    sec.goals.append(
        Goal(
            "10 slow clients",
            "/_sidecar/ready stays 200",
            f"{probe.polls - not_ready}/{probe.polls} polls 200 (every segment: "
            f"{sum(o.probe.polls - _not_ready(o.probe) for o in outcomes.values())}/"
            f"{sum(o.probe.polls for o in outcomes.values())})",
            ok_r,
            ""
            if ok_r
            else f"{dict(probe.statuses)}"
            + (f"; not 200 from {bad[0]:.1f} s to {bad[-1]:.1f} s" if bad else ""),
        )
    )
    return sec
