"""The report's arithmetic on hand-made logs: every figure worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.ubi.report import Click, click_of, fold, report


def page(
    query_id: str, mode: str, hits: list[str], *, start: int = 0, teams: Any = None
) -> dict[str, Any]:
    attributes: dict[str, Any] = {"rerank_mode": mode, "rerank_from": str(start)}
    if teams is not None:
        attributes["rerank_teams"] = teams
    return {"query_id": query_id, "query_response_hit_ids": hits, "query_attributes": attributes}


def click(object_id: str, second: int) -> Click:
    return Click(object_id, f"2026-12-01T10:00:{second:02d}.000Z")


LOG = [
    # on: q1 clicked first at position 1; q2 first click (earliest) at 3; q3 no click.
    page("q1", "on", ["a", "b", "c"]),
    page("q2", "on", ["d", "e", "f"]),
    page("q3", "on", ["g", "h"]),
    # off: q4 has no hits; q5's second page holds the click (position 10 + 1 + 1 = 12).
    page("q4", "off", []),
    page("q5", "off", ["i", "j"]),
    page("q5", "off", ["k", "l"], start=10),
    # interleave: q6 the reranker's pick clicked; q7 ES's; q8 both (a tie); q9 fell back.
    page("q6", "interleave", ["m", "n"], teams=["rerank", "es"]),
    page("q7", "interleave", ["o", "p"], teams=["rerank", "es"]),
    page("q8", "interleave", ["q", "r"], teams=["es", "rerank"]),
    page("q9", "interleave", ["s", "t"]),
]
CLICKS = {
    "q1": [click("a", 5), click("c", 9)],
    "q2": [click("e", 7), click("f", 3)],  # f at 3 s: the earliest, position 3
    "q5": [click("l", 1), click("zz", 0)],  # zz was never served for q5
    "q6": [click("m", 1)],
    "q7": [click("p", 1)],
    "q8": [click("q", 1), click("r", 2)],
    "q9": [click("s", 1)],
}


def test_cohorts() -> None:
    result = report(fold(LOG), CLICKS, unknown_query_clicks=4)
    on = result["cohorts"]["on"]
    assert on == {
        "queries": 3,
        "queries_with_click": 2,
        "first_click_rate": pytest.approx(1 / 3),
        "mrr": pytest.approx((1 + 1 / 3 + 0) / 3),
        "abandonment_rate": pytest.approx(1 / 3),
        "zero_result_rate": 0.0,
    }
    off = result["cohorts"]["off"]
    assert off["queries"] == 2 and off["queries_with_click"] == 1
    assert off["mrr"] == pytest.approx((0 + 1 / 12) / 2)
    assert off["zero_result_rate"] == pytest.approx(1 / 2)
    assert off["first_click_rate"] == 0.0
    assert result["clicks"] == {"matched": 10, "on_other_objects": 1, "on_unknown_queries": 4}


def test_interleaving() -> None:
    result = report(fold(LOG), CLICKS)
    interleaving = result["interleaving"]
    assert (interleaving["queries"], interleaving["rerank_wins"], interleaving["es_wins"]) == (
        3,
        1,
        1,
    )
    assert interleaving["ties"] == 1, "q8: one click for each team"
    assert interleaving["p_value"] == 1.0
    assert "no significant difference" in interleaving["verdict"]
    # q9 fell back to ES's order: in its cohort, not in the comparison.
    assert result["cohorts"]["interleave"]["queries"] == 4


def test_ties_of_time_are_broken_by_position() -> None:
    same = [click("c", 1), click("a", 1)]
    result = report(fold([page("q", "on", ["a", "b", "c"])]), {"q": same})
    assert result["cohorts"]["on"]["first_click_rate"] == 1.0


def test_only_click_events_count() -> None:
    event = {
        "action_name": "click",
        "timestamp": "2026-12-01T10:00:00.000Z",
        "event_attributes": {"object": {"object_id": 42}},
    }
    assert click_of(event) == Click("42", "2026-12-01T10:00:00.000Z")
    assert click_of({**event, "action_name": "impression"}) is None
    assert click_of({**event, "event_attributes": {}}) is None


def test_a_click_past_the_window_credits_neither_team() -> None:
    # Page 2 of a search interleaved over a window of 2: its hits were drafted by neither
    # team (they are the same in both lists), so the click on one is a tie, never ES's win.
    log = [
        page("q", "interleave", ["a", "b"], teams=["rerank", "es"]),
        page("q", "interleave", ["c", "d"], start=2, teams=["none", "none"]),
    ]
    result = report(fold(log), {"q": [click("c", 1)]})["interleaving"]
    assert (result["rerank_wins"], result["es_wins"], result["ties"]) == (0, 0, 1)
