"""Fixtures of the reliability suite: fault-injecting ES and model servers on loopback."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from devtools.fakes import FaultES, FaultModel
from tests.conftest import ESTarget

#: Seconds of load in the load tests; the long variant of the issue is
#: RELIABILITY_LOAD_S=60 (or the soak tool, python -m devtools.soak).
LOAD_S = float(os.environ.get("RELIABILITY_LOAD_S", "8"))


@pytest.fixture
async def fault_model() -> AsyncIterator[FaultModel]:
    async with FaultModel() as model:
        yield model


@pytest.fixture
async def fault_es() -> AsyncIterator[FaultES]:
    """An ES stand-in with canned answers (no real ES behind it)."""
    async with FaultES() as es:
        yield es


@pytest.fixture
async def fault_es_proxy(es: ESTarget, sample_index: str) -> AsyncIterator[FaultES]:
    """A fault-injecting proxy in front of the session's real ES (sample corpus loaded)."""
    async with FaultES(upstream=es.url) as proxy:
        yield proxy
