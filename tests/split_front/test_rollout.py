"""Rollout by client address through the split front: nginx appends the address it sees to
X-Forwarded-For, the sidecar believes that header only from its trusted proxies (nginx at
127.0.0.1) and takes the right-most address that is not one of them. A client that writes
its own X-Forwarded-For line cannot pass for another client.

Clients connect from distinct loopback addresses (127.0.0.2 is on the rolled-out network,
127.0.0.3 is not); nginx connects to the sidecar from 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import pytest

from devtools.fakes import FaultModel
from tests.conftest import ESTarget
from tests.split_front.conftest import AccessLog, StartFront
from tests.split_front.support import call
from tests.support.apps import running_sidecar
from tests.support.search import SAMPLE, base_config, multi_match

NGINX = "127.0.0.1"
ROLLED_OUT = "127.0.0.2"
OTHER = "127.0.0.3"
QUERY = multi_match("renew a library card", size=5)
ON = "applied"
OFF = "skipped; reason=rollout_off"


def _config(es_url: str, fake: FaultModel, trusted: list[str]) -> dict[str, Any]:
    return base_config(
        es_url,
        model={"name": fake.url},
        rollout={
            "default": "off",
            "trusted_proxies": trusted,
            "rules": [
                {"name": "office", "clients": ["10.20.0.0/16", f"{ROLLED_OUT}/32"], "mode": "on"}
            ],
        },
    )


CASES = [
    # (client address, X-Forwarded-For lines the client writes, X-Rerank, rule)
    (ROLLED_OUT, [], ON, "office"),
    (OTHER, [], OFF, "default"),
    # A client on another network claims the rolled-out one: nginx's appended address wins.
    (OTHER, ["10.20.30.40"], OFF, "default"),
    (OTHER, [ROLLED_OUT], OFF, "default"),
    (OTHER, ["10.20.30.40", f"10.20.0.1, {ROLLED_OUT}"], OFF, "default"),
    # A rolled-out client that writes some other address is still itself.
    (ROLLED_OUT, ["192.0.2.7"], ON, "office"),
    (ROLLED_OUT, [f"{OTHER}, 10.99.0.1"], ON, "office"),
]


@pytest.mark.parametrize(("source", "xff", "rerank", "rule"), CASES)
async def test_the_real_client_decides_through_nginx(
    es: ESTarget,
    sample_index: str,
    fake_reranker: FaultModel,
    split_front: StartFront,
    access_log: AccessLog,
    source: str,
    xff: list[str],
    rerank: str,
    rule: str,
) -> None:
    async with running_sidecar(_config(es.url, fake_reranker, [f"{NGINX}/32"])) as sc:
        front = split_front(es.url, sc.url)
        headers = [("X-Forwarded-For", line) for line in xff]
        answer = await call(
            front.url, "POST", f"/{SAMPLE}/_search", body=QUERY, headers=headers, source=source
        )
    assert answer.status == 200
    assert answer.rerank == rerank
    (record,) = access_log.take()
    assert record.__dict__["client"] == NGINX, "the sidecar's peer is nginx"
    assert record.__dict__["rule"] == rule


async def test_a_client_that_bypasses_nginx_cannot_spoof_either(
    es: ESTarget, sample_index: str, fake_reranker: FaultModel
) -> None:
    """Straight to the sidecar from an untrusted peer: its X-Forwarded-For is not read."""
    async with running_sidecar(_config(es.url, fake_reranker, [f"{NGINX}/32"])) as sc:
        answer = await call(
            sc.url,
            "POST",
            f"/{SAMPLE}/_search",
            body=QUERY,
            headers=[("X-Forwarded-For", ROLLED_OUT)],
            source=OTHER,
        )
    assert answer.rerank == OFF


async def test_without_nginx_in_trusted_proxies_every_client_is_nginx(
    es: ESTarget, sample_index: str, fake_reranker: FaultModel, split_front: StartFront
) -> None:
    """Why docs/deployment.md says to trust nginx's address: otherwise the sidecar sees
    only nginx, and the rolled-out client is not recognised."""
    async with running_sidecar(_config(es.url, fake_reranker, [])) as sc:
        front = split_front(es.url, sc.url)
        answer = await call(front.url, "POST", f"/{SAMPLE}/_search", body=QUERY, source=ROLLED_OUT)
    assert answer.rerank == OFF
