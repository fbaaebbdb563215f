"""Scenario 11: the default model at full size on this CPU, as a new user gets it.

Qwen3-Reranker-0.6B's architecture (all 28 layers, its real widths and vocabulary, random
weights: the hub is out of reach here, and a pass costs what it costs whatever the weights)
with the default budget and window, in front of the stub ES (passage-like hits). On a small
CPU the model scores a pair in about a second: the default window cannot be reranked within
the default budget. What a user should see is that said once, at start and in
``/_sidecar/ready``, and every search answered in ES's time; not searches that each wait
out the budget and fall back with ``timeout``.

Contenders: this tree's sidecar and, with ``--baseline TREE``, that tree's, each started
fresh (so the first searches are the first the sidecar ever sees), their searches sent one
at a time, alternating between the contenders. Reported per contender: what
``/_sidecar/ready`` says (``reranking``, warnings, capacity), the X-Rerank of every search
from the first on, and the latency.

Goals: from the first search on, none falls back with ``timeout`` (the sidecar knew
beforehand), and ``/_sidecar/ready`` carries the capacity warning.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.bench.results import Goal, Section
from devtools.bench.scenarios.common import QUERIES, search_body
from devtools.bench.servers import Bench
from devtools.tiny_models import QWEN3_06B, save_qwen3
from es_integration.sidecar_proc import SidecarProcess
from sidecar.config import RerankConfig

DEFAULTS = RerankConfig()


@dataclass
class Contender:
    name: str
    sidecar: SidecarProcess
    started_s: float
    ready: dict[str, Any]
    headers: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def timeouts(self) -> int:
        return sum("reason=timeout" in h for h in self.headers)

    @property
    def warning(self) -> str:
        warnings = self.ready.get("model", {}).get("warnings", [])
        return next((w for w in warnings if "rerank.min_window" in w), "")


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def _search(sc: SidecarProcess, query: str) -> tuple[str, float]:
    request = urllib.request.Request(
        f"{sc.url}/bench/_search",
        data=search_body(query),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as resp:
        resp.read()
        return resp.headers.get("X-Rerank", ""), time.perf_counter() - started


def _start(b: Bench, name: str, es_url: str, model: Path, tree: Path | None) -> Contender:
    config = {"model": {"self_test": False}, "rerank": {"cache": {"enabled": False}}}
    t0 = time.perf_counter()
    sc = b.sidecar(name, es_url, str(model), config, timeout=900, tree=tree)
    return Contender(name, sc, time.perf_counter() - t0, _get(f"{sc.url}/_sidecar/ready"))


def run(b: Bench) -> Section:
    model = save_qwen3(b.work / "qwen3-0.6b-random", QWEN3_06B)
    es_url, _ = b.start_fake("es-stub-default-model", "es", "--hits", str(DEFAULTS.window))
    contenders = [_start(b, "this tree", es_url, model, None)]
    if b.baseline is not None:
        contenders.append(_start(b, f"baseline ({b.baseline})", es_url, model, b.baseline))
    searches = b.scale(16, 6)
    for n in range(searches):
        for c in contenders:  # interleaved: both meet the same machine
            header, seconds = _search(c.sidecar, QUERIES[n % len(QUERIES)])
            c.headers.append(header)
            c.seconds.append(seconds)
    return _section(contenders, searches)


def _section(contenders: list[Contender], searches: int) -> Section:
    sec = Section(
        11,
        "The default model at full size on this CPU (Qwen3-Reranker-0.6B's architecture, 28 "
        f"layers, random weights; budget {DEFAULTS.budget_ms:.0f} ms, window {DEFAULTS.window})",
    )
    sec.body += [
        f"Each contender started fresh; {searches} searches each, one at a time, alternating "
        "between the contenders, from the first search the sidecar ever saw. Stub ES "
        "(passage-like hits).",
        "",
        "| contender | start s | /_sidecar/ready: reranking | capacity | warning | X-Rerank "
        "(in order) | p50 / max s |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in contenders:
        capacity = c.ready.get("model", {}).get("capacity")
        order = ", ".join(f"{h} ×{n}" for h, n in _runs(c.headers))
        latency = f"{statistics.median(c.seconds):.2f} / {max(c.seconds):.2f}"
        sec.body.append(
            f"| {c.name} | {c.started_s:.0f} | {c.ready.get('reranking')} | "
            f"{json.dumps(capacity) if capacity else '—'} | {c.warning or '—'} | {order} | "
            f"{latency} |"
        )
    mine = contenders[0]
    counts = dict(Counter(mine.headers))
    sec.goals += [
        Goal(
            "11 default model on CPU",
            "no search waits out the budget (no fallback; reason=timeout)",
            f"{mine.timeouts}/{len(mine.headers)} timeouts; {counts}"
            + (f"; baseline {contenders[1].timeouts}/{searches}" if len(contenders) > 1 else ""),
            mine.timeouts == 0,
        ),
        Goal(
            "11 default model on CPU",
            "/_sidecar/ready warns that the window does not fit the budget",
            mine.warning[:120] + "…" if mine.warning else "no warning",
            bool(mine.warning),
        ),
    ]
    return sec


def _runs(headers: list[str]) -> list[tuple[str, int]]:
    """Consecutive equal headers, counted: the order outcomes came in."""
    out: list[tuple[str, int]] = []
    for h in headers:
        if out and out[-1][0] == h:
            out[-1] = (h, out[-1][1] + 1)
        else:
            out.append((h, 1))
    return out
