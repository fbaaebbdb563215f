"""Elastic Search UI's Elasticsearch connector and Searchkit's API client, building their
own requests in Node (tests/libraries/node/frontends.js, ``npm ci`` there), run directly
against ES and through the sidecar (issue 22): three pages of seven with a window of ten,
and Search UI's autocomplete."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ESTarget
from tests.libraries.conftest import is_non_increasing
from tests.support.apps import RunningSidecar

NODE_DIR = Path(__file__).parent / "node"


async def _frontends(url: str, index: str) -> dict[str, Any]:
    """The script's report; a subprocess, so that the in-process sidecar keeps serving."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "frontends.js"),
        url,
        index,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out)
    return report


@pytest.fixture(scope="session")
async def reports(
    plain_index: str, library_sidecar: RunningSidecar, es: ESTarget
) -> tuple[dict[str, Any], dict[str, Any]]:
    if not shutil.which("node"):
        pytest.fail("node is needed (the Makefile's test target installs it)")
    if not (NODE_DIR / "node_modules" / "@searchkit" / "api").is_dir():
        pytest.fail("run `npm ci` in tests/libraries/node (the Makefile's test target does)")
    direct = await _frontends(es.url, plain_index)
    served = await _frontends(library_sidecar.url, plain_index)
    return direct, served


def _no_loss_no_repeat(direct: list[list[str]], served: list[list[str]]) -> None:
    d_ids = [i for page in direct for i in page]
    s_ids = [i for page in served for i in page]
    assert [len(p) for p in served] == [len(p) for p in direct]
    assert len(s_ids) == len(set(s_ids)), f"a hit repeated: {served}"
    assert set(s_ids) == set(d_ids), "no hit lost"


async def test_search_ui_pages_and_raw_hits(
    reports: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Points 1 and 5 in Search UI: pages neither lose nor repeat results, each page's
    ``_score`` never rises (the second page crosses the window's edge), and a result's
    ``_meta.rawHit`` holds exactly ES's keys; facets and totals are ES's."""
    direct, served = (r["searchUI"] for r in reports)
    d_pages = [[r["id"] for r in p["results"]] for p in direct["pages"]]
    s_pages = [[r["id"] for r in p["results"]] for p in served["pages"]]
    _no_loss_no_repeat(d_pages, s_pages)
    assert s_pages != d_pages, "reranked"
    for d_page, s_page in zip(direct["pages"], served["pages"], strict=True):
        assert (s_page["total"], s_page["facets"]) == (d_page["total"], d_page["facets"])
        assert is_non_increasing(r["rawHit"]["_score"] for r in s_page["results"])
        assert {frozenset(r["rawHit"]) for r in s_page["results"]} == {
            frozenset(r["rawHit"]) for r in d_page["results"]
        }
        assert all("_rerank" not in r["rawHit"] for r in s_page["results"])


async def test_search_ui_autocomplete_is_not_reranked(
    reports: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Point 8: the autocomplete's type-ahead searches are ES's, untouched."""
    direct, served = (r["searchUI"]["autocomplete"] for r in reports)
    assert served == direct
    calls = [r for r in reports[1]["requests"] if '"libr' in (r["body"] or "")]
    # The results search is type-ahead; the suggester's asks for no hits (size 0).
    reasons = sorted(r["rerank"] for r in calls)
    assert reasons == ["skipped; reason=size_zero", "skipped; reason=type_ahead"], calls


async def test_searchkit_pages(reports: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Points 1 and 5 in Searchkit: its hits (built from ES's) page without loss or repeat,
    with ES's facets and counts, and its result searches are reranked up to the window."""
    direct, served = (r["searchkit"] for r in reports)
    d_pages = [[h["objectID"] for h in p["hits"]] for p in direct["pages"]]
    s_pages = [[h["objectID"] for h in p["hits"]] for p in served["pages"]]
    _no_loss_no_repeat(d_pages, s_pages)
    assert s_pages != d_pages, "reranked"
    for d_page, s_page in zip(direct["pages"], served["pages"], strict=True):
        assert (s_page["nbHits"], s_page["facets"]) == (d_page["nbHits"], d_page["facets"])
        assert {frozenset(h) for h in s_page["hits"]} == {frozenset(h) for h in d_page["hits"]}
    searches = [r for r in reports[1]["requests"] if "_msearch" in r["url"]]
    # Pages of seven from 0, 7 and 14 with a window of ten: the third starts past it.
    outcomes = [r["rerank"] for r in searches]
    # The second page continues the order the first page served (issue 23's page orders):
    # cached, or applied when it was not kept.
    assert outcomes[0] == "applied" and outcomes[1] in ("applied", "cached"), searches
    assert outcomes[2:] == ["skipped; reason=beyond_window"], searches
