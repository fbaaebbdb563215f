"""Prometheus metrics, one registry per application (so tests can run several apps).

Counters and histograms are updated on the way; cache, breaker and queue figures are read
when Prometheus scrapes (a custom collector), so they can never drift from the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.admission.meter import Capacity
from sidecar.scoring.slot import MODEL_STATES

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BREAKER_STATES = ("closed", "open", "half-open")
SHARED_STATES = ("up", "down", "full")


@dataclass(frozen=True)
class LiveFigures:
    """Callables the collector reads at scrape time."""

    score_cache: Callable[[], tuple[int, int, int, int]]  # hits, misses, entries, max
    response_cache: Callable[[], tuple[int, int, int]]  # hits, misses, entries
    breaker_state: Callable[[], str]
    queue_pairs: Callable[[], int]
    in_flight_pairs: Callable[[], int]
    #: The learned cost; None until the model has answered.
    seconds_per_pair: Callable[[], float | None]
    #: What the model can do for a search with the default budget and window.
    capacity: Callable[[], Capacity | None]
    shadow_tasks: Callable[[], int]
    model_ready: Callable[[], bool]
    #: The UBI log's state (None: off): written, dropped by reason, queued bytes.
    ubi: Callable[[], dict[str, Any] | None] = lambda: None
    #: ``loading``, ``retrying``, ``refused``, ``warm`` or ``stopped``.
    model_state: Callable[[], str] = lambda: "warm"
    #: Seconds a search arriving now would wait for the model (None while unknown).
    queue_wait_s: Callable[[], float | None] = lambda: None
    #: The shared store's state (None: ``shared.url`` unset).
    shared: Callable[[], dict[str, Any] | None] = lambda: None


class _LiveCollector(Collector):
    def __init__(self, live: LiveFigures) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        yield _gauge(
            "rerank_sidecar_model_ready",
            "1 when the model is loaded and warm",
            self.live.model_ready(),
        )
        state = self.live.model_state()
        yield _labelled(
            "rerank_sidecar_model_state",
            "1 for the model's state (searches are served in ES order but when warm; "
            "readiness never depends on it)",
            "state",
            {name: float(name == state) for name in MODEL_STATES},
        )
        hits, misses, entries, maxsize = self.live.score_cache()
        yield _labelled(
            "rerank_sidecar_score_cache_lookups", "Score cache lookups", "result",
            {"hit": hits, "miss": misses},
        )  # fmt: skip
        yield _gauge("rerank_sidecar_score_cache_entries", "Entries in the score cache", entries)
        yield _gauge("rerank_sidecar_score_cache_max_entries", "Score cache bound", maxsize)
        r_hits, r_misses, r_entries = self.live.response_cache()
        yield _labelled(
            "rerank_sidecar_response_cache_lookups", "Response cache lookups", "result",
            {"hit": r_hits, "miss": r_misses},
        )  # fmt: skip
        yield _gauge("rerank_sidecar_response_cache_entries", "Cached responses", r_entries)
        state = self.live.breaker_state()
        yield _labelled(
            "rerank_sidecar_breaker_state", "1 for the breaker's current state", "state",
            {name: float(name == state) for name in BREAKER_STATES},
        )  # fmt: skip
        yield _gauge(
            "rerank_sidecar_queue_pairs",
            "Pairs waiting for the model (for admission, and in its worker's queue)",
            self.live.queue_pairs(),
        )
        yield _gauge(
            "rerank_sidecar_in_flight_pairs",
            "Pairs admitted to the model",
            self.live.in_flight_pairs(),
        )
        yield _gauge(
            "rerank_sidecar_queue_wait_seconds",
            "Seconds a search arriving now would wait for the model: the pairs ahead of it "
            "(with the model and waiting) at the learned cost; 0 while the cost is unknown. "
            "The signal to scale replicas on (docker/k8s-scaling/hpa-queue.yaml)",
            self.live.queue_wait_s() or 0.0,
        )
        per_pair = self.live.seconds_per_pair()
        if per_pair is not None:
            yield _gauge(
                "rerank_sidecar_model_seconds_per_pair",
                "The model's cost the budget is planned with (learned as it serves)",
                per_pair,
            )
        yield from _capacity(self.live.capacity())
        yield _gauge("rerank_sidecar_shadow_tasks", "Shadow reranks", self.live.shadow_tasks())
        yield from _ubi(self.live.ubi())
        yield from _shared(self.live.shared())


def _capacity(capacity: Capacity | None) -> Iterator[Metric]:
    if capacity is None:
        return
    yield _gauge(
        "rerank_sidecar_model_pairs_per_second",
        "The model's throughput (steady estimate, learned from its passes)",
        capacity.pairs_per_s,
    )
    yield _gauge(
        "rerank_sidecar_capacity_window",
        "Hits of the default window that fit the default budget (rerank.min_window or more: "
        "searches can be reranked)",
        capacity.k,
    )
    yield _gauge(
        "rerank_sidecar_capacity_searches_per_second",
        "Searches per second the model reranks at that window",
        capacity.searches_per_s,
    )


def _ubi(state: dict[str, Any] | None) -> Iterator[Metric]:
    if state is None:
        return
    yield _gauge("rerank_sidecar_ubi_written", "UBI entries written to ES", state["written"])
    yield _labelled(
        "rerank_sidecar_ubi_dropped",
        "UBI entries dropped, by reason (queue_full, es_unavailable, rejected)",
        "reason",
        {r: state["dropped"].get(r, 0) for r in ("queue_full", "es_unavailable", "rejected")},
    )
    yield _gauge("rerank_sidecar_ubi_queued_bytes", "UBI entries waiting", state["queued_bytes"])
    yield _gauge(
        "rerank_sidecar_ubi_guard_trips",
        "Times the UBI guard turned reranking off (ES's order won significantly)",
        state["guard_trips"],
    )


def _shared(state: dict[str, Any] | None) -> Iterator[Metric]:
    if state is None:
        return
    yield _labelled(
        "rerank_sidecar_shared_state",
        "1 for the shared store's state (up; down: not asked until it answers again; full: "
        "writes refused, reads served)",
        "state",
        {name: float(name == state["state"]) for name in SHARED_STATES},
    )
    yield _labelled(
        "rerank_sidecar_shared_errors",
        "Failed calls to the shared store, by kind (searches went on without it)",
        "kind",
        state["errors"],
    )
    yield _gauge(
        "rerank_sidecar_shared_written", "Entries written to the shared store", state["written"]
    )
    yield _labelled(
        "rerank_sidecar_shared_dropped",
        "Writes to the shared store dropped, by reason (unavailable, queue_full, too_large)",
        "reason",
        state["dropped"],
    )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "rerank_sidecar_requests",
            "Requests by route, HTTP status and rerank outcome",
            ["route", "status", "outcome"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "rerank_sidecar_stage_seconds",
            "Time per stage: es, queue (waiting for the model), model, total",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_pairs = Histogram(
            "rerank_sidecar_batch_pairs",
            "Pairs per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.batch_tokens = Histogram(
            "rerank_sidecar_batch_tokens",
            "Padded tokens per forward pass",
            buckets=(64, 256, 1024, 4096, 8192, 16384, 32768, 65536),
            registry=r,
        )
        self.model_load_failures = Counter(
            "rerank_sidecar_model_load_failures",
            "Model load attempts that failed (retried with backoff; see /_sidecar/ready)",
            registry=r,
        )
        self.shadow_displacement = Histogram(
            "rerank_sidecar_shadow_rank_displacement",
            "In shadow mode, how many places the rerank would move each hit",
            buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55),
            registry=r,
        )

    def attach(self, live: LiveFigures) -> None:
        self.registry.register(_LiveCollector(live))

    def observe_batch(self, pairs: int, padded_tokens: int, seconds: float) -> None:
        """Called from the model worker thread (prometheus_client is thread-safe)."""
        self.batch_pairs.observe(pairs)
        self.batch_tokens.observe(padded_tokens)

    def observe_displacement(self, moves: Sequence[int]) -> None:
        for move in moves:
            self.shadow_displacement.observe(move)
