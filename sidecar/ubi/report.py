"""The report: does reranking help, by the users' own clicks.

Computed from the two UBI indices, exactly as defined here (and in docs/evaluation.md):

* **A query** is a ``query_id``: the pages served for it are one query. Its cohort is the
  rollout mode it was served in (``on``, ``off``, ``shadow``, ``interleave``).
* **A click** is an event with ``action_name: click`` whose object id
  (``event_attributes.object.object_id``) is among its query's logged hit ids. Its position
  is the page's ``from`` + the hit's index in the page + 1: the position the sidecar served,
  not the one the client reports. Clicks on other objects, and clicks on queries that were
  not logged, are counted apart.
* Per cohort: ``queries``; ``queries_with_click``; ``first_click_rate``, the share of
  queries whose first click (earliest timestamp, ties by position) is on position 1; ``mrr``,
  the mean over queries of 1 / the position of the first click (0 without a click);
  ``abandonment_rate``, the share without a click; ``zero_result_rate``, the share with no
  hits.
* Interleaving: each interleaved query (its pages served interleaved, not fallen back to
  ES's order) with at least one click credits each click to the team that placed the
  clicked hit; the team with more clicks wins it, or it is a tie. ``p_value`` is the
  two-sided exact sign test of the reranker's wins against ES's.

The arithmetic here is pure: documents in, figures out. :mod:`sidecar.ubi.reader` reads the
documents from the indices.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.rerank.interleave import ES, RERANK
from sidecar.ubi.stats import sign_test, verdict

#: query_attributes keys the sidecar writes (prefixed: a client's own never collide).
MODE, RULE, OUTCOME, MODEL, K, FROM, TEAMS = (
    "rerank_mode",
    "rerank_rule",
    "rerank_outcome",
    "rerank_model",
    "rerank_k",
    "rerank_from",
    "rerank_teams",
)
MODES = ("on", "off", "shadow", "interleave")


@dataclass
class Served:
    """One query as served: every page folded into positions (1-based)."""

    query_id: str
    mode: str
    hits: dict[int, str] = field(default_factory=dict)
    teams: dict[int, str] = field(default_factory=dict)
    #: Interleaved and compared: every page served interleaved (none fell back).
    compared: bool = True

    def add_page(self, doc: Mapping[str, Any]) -> None:
        attributes = doc.get("query_attributes") or {}
        start = _int(attributes.get(FROM))
        ids = doc.get("query_response_hit_ids") or []
        teams = attributes.get(TEAMS) or []
        for i, object_id in enumerate(ids):
            self.hits.setdefault(start + i + 1, str(object_id))
        if self.mode == "interleave":
            if len(teams) != len(ids):
                self.compared = False  # ES's order: the model could not help in time
            for i, team in enumerate(teams):
                self.teams.setdefault(start + i + 1, str(team))


@dataclass(frozen=True)
class Click:
    object_id: str
    timestamp: str


@dataclass
class Cohort:
    queries: int = 0
    with_click: int = 0
    first_at_1: int = 0
    reciprocal: float = 0.0
    zero_results: int = 0

    def figures(self) -> dict[str, Any]:
        n = self.queries
        return {
            "queries": n,
            "queries_with_click": self.with_click,
            "first_click_rate": self.first_at_1 / n if n else 0.0,
            "mrr": self.reciprocal / n if n else 0.0,
            "abandonment_rate": (n - self.with_click) / n if n else 0.0,
            "zero_result_rate": self.zero_results / n if n else 0.0,
        }


@dataclass
class Tally:
    cohorts: dict[str, Cohort] = field(default_factory=lambda: defaultdict(Cohort))
    interleaved: int = 0
    rerank_wins: int = 0
    es_wins: int = 0
    ties: int = 0
    clicks: int = 0
    other_objects: int = 0

    def add(self, served: Served, clicks: Sequence[Click]) -> None:
        positions = {object_id: pos for pos, object_id in sorted(served.hits.items(), reverse=True)}
        matched = [
            (c.timestamp, positions[c.object_id]) for c in clicks if c.object_id in positions
        ]
        self.clicks += len(matched)
        self.other_objects += len(clicks) - len(matched)
        cohort = self.cohorts[served.mode]
        cohort.queries += 1
        cohort.zero_results += not served.hits
        if matched:
            first = min(matched)[1]  # earliest, ties by position
            cohort.with_click += 1
            cohort.first_at_1 += first == 1
            cohort.reciprocal += 1 / first
        if served.mode == "interleave" and served.compared and served.teams:
            self.interleaved += 1
            self._credit(served, [p for _, p in matched])

    def _credit(self, served: Served, positions: list[int]) -> None:
        if not positions:
            return
        rerank = sum(served.teams.get(p) == RERANK for p in positions)
        es = sum(served.teams.get(p) == ES for p in positions)
        if rerank > es:
            self.rerank_wins += 1
        elif es > rerank:
            self.es_wins += 1
        else:
            self.ties += 1


def fold(pages: Iterable[Mapping[str, Any]]) -> list[Served]:
    """Query documents (one per page served) grouped by ``query_id``, in first-seen order."""
    out: dict[str, Served] = {}
    for doc in pages:
        query_id = str(doc.get("query_id", ""))
        attributes = doc.get("query_attributes") or {}
        served = out.get(query_id)
        if served is None:
            served = out[query_id] = Served(query_id, str(attributes.get(MODE, "on")))
        served.add_page(doc)
    return list(out.values())


def click_of(event: Mapping[str, Any]) -> Click | None:
    """The click an event is (None for any other action)."""
    if event.get("action_name") != "click":
        return None
    attributes = event.get("event_attributes") or {}
    obj = attributes.get("object") or {} if isinstance(attributes, dict) else {}
    object_id = obj.get("object_id") if isinstance(obj, dict) else None
    if object_id is None:
        return None
    return Click(str(object_id), str(event.get("timestamp", "")))


def report(
    queries: Iterable[Served],
    clicks: Mapping[str, Sequence[Click]],
    *,
    unknown_query_clicks: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The report's figures (its JSON): per cohort, the interleaving, the clicks counted."""
    tally = Tally()
    for served in queries:
        tally.add(served, clicks.get(served.query_id, ()))
    return summary(tally, unknown_query_clicks, alpha)


def summary(tally: Tally, unknown_query_clicks: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """The figures of a tally (see :func:`report`)."""
    p_value = sign_test(tally.rerank_wins, tally.es_wins)
    return {
        "cohorts": {mode: tally.cohorts[mode].figures() for mode in MODES if mode in tally.cohorts},
        "interleaving": {
            "queries": tally.interleaved,
            "rerank_wins": tally.rerank_wins,
            "es_wins": tally.es_wins,
            "ties": tally.ties,
            "p_value": p_value,
            "verdict": verdict(tally.rerank_wins, tally.es_wins, tally.ties, p_value, alpha),
        },
        "clicks": {
            "matched": tally.clicks,
            "on_other_objects": tally.other_objects,
            "on_unknown_queries": unknown_query_clicks,
        },
    }


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
