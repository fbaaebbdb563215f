"""ES goes away mid-test and comes back: the sidecar answers 502 meanwhile and recovers by
itself, without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from es_integration.local_es import LocalES
from es_integration.sidecar_proc import SidecarProcess
from tests.support.search import BUNDLED_MODEL


@pytest.fixture
def own_es(tmp_path: Path) -> Iterator[LocalES]:
    with LocalES.start(data_dir=tmp_path / "es") as es:
        yield es


def test_es_down_then_back(own_es: LocalES, tmp_path: Path) -> None:
    with SidecarProcess.start(
        own_es.url, log_path=tmp_path / "sidecar.log", model=BUNDLED_MODEL
    ) as sc:
        s = requests.Session()
        assert s.put(f"{sc.url}/outage", json={}).status_code == 200
        assert s.get(f"{sc.url}/outage/_search").status_code == 200

        own_es.stop()
        for path in ("/outage/_search", "/outage/_count", "/_cluster/health"):
            resp = s.get(sc.url + path)
            assert resp.status_code == 502, path
            body = resp.json()
            assert body["status"] == 502
            assert body["error"]["type"] == "upstream_unavailable_exception"
            assert body["error"]["reason"]
        assert sc.proc.poll() is None, "the sidecar must stay up"

        own_es.launch()
        deadline = time.monotonic() + 10
        statuses = []
        while time.monotonic() < deadline:
            statuses.append(s.get(f"{sc.url}/outage/_search").status_code)
            if statuses[-1] == 200:
                break
            time.sleep(0.1)
        assert statuses[-1] == 200, statuses
        assert s.get(f"{sc.url}/outage/_count").json()["count"] == 0
