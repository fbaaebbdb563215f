"""The differential suite: the same request shapes and client scripts directly and through
the sidecar, against Elasticsearch (noida-db) and OpenSearch (osmem-server). What the server
received and what the client received must not differ but for the documented rewrites and
the reranked order (tests/wire/compare.py says exactly what that allows). The counts are in
the pytest summary ("wire differential suite").
"""

from __future__ import annotations

import shutil

import pytest

from tests.support.tally import WIRE
from tests.wire.cases import all_cases
from tests.wire.conftest import WireEnv
from tests.wire.runner import (
    FLOWS,
    NODE_DIR,
    Result,
    new_session,
    node_script,
    python_es_script,
    python_os_script,
    run_case,
    run_flow,
    run_script,
)


def _check(request: pytest.FixtureRequest, env: WireEnv, results: list[Result]) -> None:
    cases = [(env.server, r.group, r.name, r.outcome, list(r.diffs.items)) for r in results]
    request.node.user_properties.append((WIRE, cases))
    bad = [
        f"{r.group}/{r.name} ({r.outcome}): {'; '.join(r.diffs.items)}" for r in results if r.diffs
    ]
    assert not bad, "\n".join(bad[:30])


async def test_request_shapes(request: pytest.FixtureRequest, wire_env: WireEnv) -> None:
    """A few hundred requests: CRUD and other APIs, search options, paging, aggregations,
    highlight, suggest, collapse, knn, runtime fields, URL parameters, formats,
    compatibility headers, content types, compression, _msearch, real frontends."""
    results = []
    async with new_session() as session:
        for case in all_cases():
            results.append(await run_case(session, wire_env.tap, wire_env.sidecar.url, case))
    outcomes = {r.outcome.split(";")[0] for r in results}
    assert "applied" in outcomes or "cached" in outcomes, "the suite reranks"
    _check(request, wire_env, results)


@pytest.mark.parametrize("flow", sorted(FLOWS))
async def test_flows(request: pytest.FixtureRequest, wire_env: WireEnv, flow: str) -> None:
    """Scroll and point in time: every page, and the ids that continue them."""
    async with new_session() as session:
        results = await run_flow(
            session, wire_env.tap, wire_env.sidecar.url, flow, wire_env.target.opensearch
        )
    assert len(results) >= 3
    _check(request, wire_env, results)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "http_compress"])
async def test_python_client_script(
    request: pytest.FixtureRequest, wire_env: WireEnv, compress: bool
) -> None:
    """The official Python client of the server (elasticsearch 8 / opensearch-py)."""
    if wire_env.target.opensearch:
        script, name = python_os_script, "opensearch-py"
    else:
        script, name = python_es_script, "elasticsearch-py"
    suffix = "+http_compress" if compress else ""
    results = await run_script(wire_env.tap, wire_env.sidecar.url, script, name + suffix, compress)
    _check(request, wire_env, results)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compression"])
async def test_node_client_script(
    request: pytest.FixtureRequest, wire_env: WireEnv, compress: bool
) -> None:
    """The official Node client, @elastic/elasticsearch 8 (``npm ci`` in tests/wire/node).
    On OpenSearch it is refused (ES vendor media types: 406), as directly."""
    assert shutil.which("node"), "node is needed (the Makefile's test target installs it)"
    assert (NODE_DIR / "node_modules" / "@elastic" / "elasticsearch").is_dir(), (
        "run `npm ci` in tests/wire/node (the Makefile's test target does)"
    )
    suffix = "+compression" if compress else ""
    results = await run_script(
        wire_env.tap, wire_env.sidecar.url, node_script, "node" + suffix, compress
    )
    _check(request, wire_env, results)
