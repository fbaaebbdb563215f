"""The debug page at ``/_sidecar/ui``, driven in a real headless Chromium.

A real ``rerank-sidecar serve`` process with the bundled MiniLM stands in front of the
session's ES with the sample corpus; Selenium types a demo query into the page, and the page
must show the ES order and the reranked order side by side, the rank movement, the outcome
and the timings. Then the playground tab reranks pasted texts through ``/_sidecar/v1/rerank``.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package. Without
them the test fails (it is not skipped) and says what to install.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from es_integration.corpus import read_jsonl, sample_corpus_path
from es_integration.sidecar_proc import SidecarProcess
from tests.conftest import ESTarget
from tests.support.search import BUNDLED_MODEL, GENEROUS_BUDGET_MS, SAMPLE
from tests.support.ubi import TOKEN, interleaved, now, put_logs, ubi_config

INSTALL = (
    "apt-get update && apt-get install -y chromium chromium-driver, "
    "then pip install selenium==4.51.0"
)
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1440,1000",
)
#: The demo query's BM25 rank (7) is for this multi_match, as in tests/rerank.
FIELDS = "title^2, body, subjects"
#: The page must show the reranked order, so the model gets all the time it needs, even on
#: a busy machine: no rerank budget or API timeout cuts it short, and the browser waits
#: longer than either.
MODEL_S = GENEROUS_BUDGET_MS / 1000
WAIT_S = MODEL_S + 30


def browser_paths() -> tuple[str, str]:
    """Chromium and chromedriver, or a test failure (not a skip) that says how to install them.

    Called first thing in each test (not as a fixture), so that a missing browser is reported
    as the test's failure, before a sidecar is started for nothing.
    """
    chromium = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
    driver = (
        os.environ.get("CHROMEDRIVER_BIN")
        or shutil.which("chromedriver")
        or "/usr/bin/chromedriver"
    )
    missing = [p for p in (chromium, driver) if not Path(p).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium Python package")
    if missing:
        pytest.fail(
            f"the UI test drives a real headless Chromium; missing: {', '.join(missing)}. "
            f"Install with: {INSTALL}",
            pytrace=False,
        )
    return chromium, driver


@pytest.fixture(scope="module")
def ui_sidecar(
    es: ESTarget,
    sample_index: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SidecarProcess]:
    logs = tmp_path_factory.mktemp("ui-sidecar")
    with SidecarProcess.start(
        es.url,
        log_path=logs / "sidecar.log",
        model=BUNDLED_MODEL,
        config={
            "rerank": {"window": 20, "budget_ms": GENEROUS_BUDGET_MS},
            "api": {"timeout_s": MODEL_S},
            "rollout": {"default": "on"},
        },
        wait_ready=True,
    ) as proc:
        yield proc


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log"))
    browser = webdriver.Chrome(service=service, options=options)
    try:
        yield browser
    finally:
        browser.quit()


def _corpus() -> dict[str, dict[str, Any]]:
    return {str(d["_id"]): d for d in read_jsonl(sample_corpus_path())}


def _es_ids(es_url: str, query: str) -> list[str]:
    body = {"query": {"multi_match": {"query": query, "fields": ["title^2", "body", "subjects"]}}}
    req = urllib.request.Request(
        f"{es_url}/{SAMPLE}/_search",
        data=json.dumps({**body, "size": 10}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [h["_id"] for h in json.load(resp)["hits"]["hits"]]


def _text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _wait_for(driver: Any, css: str, error_css: str) -> None:
    """Until ``css`` matches something; an error box on the page fails at once, with its text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d: Any) -> bool:
        errors = [e for e in d.find_elements(By.CSS_SELECTOR, error_css) if e.is_displayed()]
        if errors:
            pytest.fail(f"the page shows an error: {errors[0].text}", pytrace=False)
        return bool(d.find_elements(By.CSS_SELECTOR, css))

    WebDriverWait(driver, WAIT_S).until(done, f"the page showed no {css} within {WAIT_S}s")


def _screenshot(driver: Any, path: Path) -> None:
    """The whole page, beyond the window's height (Chrome DevTools protocol)."""
    width, height = driver.execute_script(
        "const d = document.documentElement; return [d.scrollWidth, d.scrollHeight];"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def _assert_no_console_errors(driver: Any) -> None:
    """No script error, CSP violation or failed request on the way."""
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == [], severe


def test_compare_and_playground_in_chromium(
    request: pytest.FixtureRequest,
    es: ESTarget,
    demo_queries: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    browser_paths()
    ui_sidecar: SidecarProcess = request.getfixturevalue("ui_sidecar")
    driver: Any = request.getfixturevalue("driver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # A demo whose useful document BM25 puts at rank 7. The last such demo: the first one is
    # asserted "applied" (not "cached") by tests/rerank against the shared in-process sidecar.
    demo = [q for q in demo_queries if q.get("bm25_rank") == 7 and q.get("note") == "demo"][-1]
    target = demo["relevant"][0]
    corpus = _corpus()
    es_ids = _es_ids(es.url, demo["query"])
    assert es_ids.index(target) == 6, "BM25 puts it at rank 7"

    driver.get(f"{ui_sidecar.url}/_sidecar/ui")
    assert driver.title.startswith("Rerank debugger")
    driver.find_element(By.ID, "index").send_keys(SAMPLE)
    driver.find_element(By.ID, "query").send_keys(demo["query"])
    driver.find_element(By.CSS_SELECTOR, "#compare-form details summary").click()
    driver.find_element(By.ID, "fields").send_keys(FIELDS)
    driver.find_element(By.ID, "compare-run").click()
    _wait_for(driver, "#rr-list li", "#compare-error")

    # Reranked column: the useful document first, with its title, moved up from rank 7.
    rr_first = driver.find_element(By.CSS_SELECTOR, "#rr-list li")
    assert rr_first.get_attribute("data-id") == target
    assert rr_first.find_element(By.CLASS_NAME, "hit-title").text == corpus[target]["title"]
    assert rr_first.find_element(By.CLASS_NAME, "move").text == "▲6"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#rr-list li")) == 10

    # ES column: the same document at rank 7, marked as moving up six places.
    es_items = driver.find_elements(By.CSS_SELECTOR, "#es-list li")
    assert [li.get_attribute("data-id") for li in es_items] == es_ids
    es_hit = es_items[6]
    assert es_hit.get_attribute("data-id") == target
    assert es_hit.find_element(By.CLASS_NAME, "rank").text.strip("#") == "7"
    assert es_hit.find_element(By.CLASS_NAME, "move").text == "▲6"
    # Every ES hit that the rerank moved down shows how far, with the ▼ sign.
    moves = [li.find_element(By.CLASS_NAME, "move").text for li in es_items]
    assert any(m.startswith("▼") for m in moves)

    # Outcome and timings from X-Rerank and Server-Timing.
    assert _text(driver, "#outcome") in ("applied", "cached")
    assert "all-MiniLM-L6-v2" in _text(driver, "#outcome-detail")
    timing_names = {
        t.get_attribute("data-name")
        for t in driver.find_elements(By.CSS_SELECTOR, "#timings .timing")
    }
    assert {"es", "model", "total"} <= timing_names
    assert "ms" in _text(driver, '#timings .timing[data-name="total"] dd')
    _screenshot(driver, tmp_path / "compare.png")

    # Playground: three pasted texts, BM25's top two first and the useful one last; the
    # model puts the useful one first.
    texts = [f"{corpus[d]['title']} {corpus[d]['body']}" for d in [*es_ids[:2], target]]
    driver.find_element(By.ID, "tab-playground").click()
    assert driver.find_element(By.ID, "panel-playground").is_displayed()
    assert not driver.find_element(By.ID, "panel-compare").is_displayed()
    driver.find_element(By.ID, "play-query").send_keys(demo["query"])
    box = driver.find_element(By.ID, "play-texts")
    box.send_keys("\n".join(texts))
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    _wait_for(driver, "#play-list li", "#play-error")
    rows = driver.find_elements(By.CSS_SELECTOR, "#play-list li")
    assert len(rows) == 3
    assert rows[0].get_attribute("data-index") == "2"
    assert rows[0].find_element(By.CLASS_NAME, "hit-title").text == texts[2]
    assert rows[0].find_element(By.CLASS_NAME, "move").text == "▲2"
    assert "all-MiniLM-L6-v2" in _text(driver, "#play-detail")
    _screenshot(driver, tmp_path / "playground.png")
    _assert_no_console_errors(driver)


HOSTILE = "<img src=x onerror=\"document.title='pwned'\"> opening hours"


def test_es_text_is_shown_as_text_and_titles_fall_back(
    request: pytest.FixtureRequest,
    es: ESTarget,
    tmp_path: Path,
) -> None:
    """Markup in documents is shown literally, never run; a hit without ``title`` is named by
    its first text field."""
    browser_paths()
    ui_sidecar: SidecarProcess = request.getfixturevalue("ui_sidecar")
    driver: Any = request.getfixturevalue("driver")
    from elasticsearch import Elasticsearch
    from selenium.webdriver.common.by import By

    client = Elasticsearch(es.url, request_timeout=30)
    index = "ui-escape"
    client.options(ignore_status=404).indices.delete(index=index)
    client.index(index=index, id="x1", document={"title": HOSTILE, "body": "library hours"})
    client.index(
        index=index,
        id="x2",
        document={"year": 2024, "name": "<b>Opening</b> hours & holidays", "note": "later"},
        refresh=True,
    )
    try:
        driver.get(f"{ui_sidecar.url}/_sidecar/ui?index={index}&q=opening+hours")
        _wait_for(driver, "#rr-list li", "#compare-error")
        titles = {
            li.get_attribute("data-id"): li.find_element(By.CLASS_NAME, "hit-title").text
            for li in driver.find_elements(By.CSS_SELECTOR, "#es-list li")
        }
        assert titles == {"x1": HOSTILE, "x2": "<b>Opening</b> hours & holidays"}
        assert driver.find_elements(By.CSS_SELECTOR, "main img, main b") == []
        assert driver.title.startswith("Rerank debugger")
        _assert_no_console_errors(driver)
    finally:
        client.indices.delete(index=index)


def test_evidence_tab_shows_the_ubi_report(
    request: pytest.FixtureRequest, es: ESTarget, tmp_path: Path
) -> None:
    """The Evidence tab: the admin token typed in, the report of hand-made logs (30
    interleaved queries, each won by the reranker) drawn as a verdict, a bar and a table."""
    browser_paths()
    driver: Any = request.getfixturevalue("driver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    config = ubi_config(es.url, rollout={"default": "interleave"})
    queries, events = interleaved(30, "rerank", now() - timedelta(hours=1))

    async def write_logs() -> None:
        async with aiohttp.ClientSession() as http:
            await put_logs(http, es.url, config, queries, events)

    asyncio.run(write_logs())
    with SidecarProcess.start(
        es.url,
        log_path=tmp_path / "sidecar.log",
        model=BUNDLED_MODEL,
        config=config,
        wait_ready=True,
    ) as sidecar:
        driver.get(f"{sidecar.url}/_sidecar/ui#evidence")
        assert driver.find_element(By.ID, "panel-evidence").is_displayed()
        driver.find_element(By.ID, "evidence-token").send_keys(TOKEN)
        Select(driver.find_element(By.ID, "evidence-period")).select_by_value("now-1d")
        driver.find_element(By.ID, "evidence-run").click()
        _wait_for(driver, "#cohorts-body tr", "#evidence-error")
        assert _text(driver, "#verdict") == "reranker wins"
        assert "30 interleaved queries" in _text(driver, "#verdict-detail")
        assert _text(driver, "#wins .win.rerank") == "reranker 30"
        row = driver.find_element(By.CSS_SELECTOR, "#cohorts-body tr")
        cells = [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]
        assert cells[0].startswith("interleave")
        assert cells[1:4] == ["30", "30", "50.0%"]  # queries, with a click, first click on #1
        assert "30 on logged hits" in _text(driver, "#evidence-clicks")
        assert "has not turned reranking off" in _text(driver, "#evidence-guard")
        _screenshot(driver, tmp_path / "evidence.png")
        _assert_no_console_errors(driver)

        # A wrong token is the admin API's 403, shown as such.
        box = driver.find_element(By.ID, "evidence-token")
        box.clear()
        box.send_keys("wrong")
        driver.find_element(By.ID, "evidence-run").click()
        _wait_for(driver, "#evidence-error:not([hidden])", "#no-such-element")
        assert _text(driver, "#evidence-error") == "HTTP 403: wrong admin token"
