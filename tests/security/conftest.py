"""The security suite's fixtures and its probe count.

Every check in tests/security goes through the ``probe`` fixture: ``probe.check(what, ok,
detail)`` counts one probe and, when ``ok`` is false, one unsafe finding. Checks do not stop
the test, so a run against unfixed code counts every unsafe behaviour, not just the first;
a test with any unsafe finding fails once its body is done, and a test that crashes counts
as one more unsafe probe. The totals (tests/support/tally.py) are printed at the end of
every pytest run that collected this suite::

    ===== security probes: 212 run, 0 unsafe =====
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field

import pytest

from devtools.fakes import FaultModel
from tests.support.secure_es import SecureES, secure_es
from tests.support.tally import PROBES


@dataclass
class Probe:
    test: str
    unsafe: list[str] = field(default_factory=list)
    run: int = 0

    def check(self, what: str, ok: bool, detail: object = "") -> bool:
        self.run += 1
        if not ok:
            self.unsafe.append(f"{what}: {detail}" if detail != "" else what)
        return ok


@pytest.fixture
def probe(request: pytest.FixtureRequest) -> Iterator[Probe]:
    found = Probe(request.node.nodeid.split("::", 1)[-1])
    yield found
    # On the teardown report: every check, those of the test's other fixtures included.
    unsafe = [f"{found.test}: {text}"[:400] for text in found.unsafe]
    request.node.user_properties.append((PROBES, {"run": found.run, "unsafe": unsafe}))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    try:
        result = yield
    except BaseException:
        found = getattr(item, "funcargs", {}).get("probe")
        if isinstance(found, Probe):
            found.check("the probe ran to its end", False, "the test raised")
        raise
    found = getattr(item, "funcargs", {}).get("probe")
    if isinstance(found, Probe) and found.unsafe:
        listed = "\n  ".join(found.unsafe[:20])
        raise AssertionError(f"{len(found.unsafe)} of {found.run} probes unsafe:\n  {listed}")
    return result


@pytest.fixture
async def secured_es() -> AsyncIterator[SecureES]:
    """The secured, recording ES stand-in (overrides the session's real ES here)."""
    async with secure_es() as server:
        yield server


@pytest.fixture
async def model() -> AsyncIterator[FaultModel]:
    async with FaultModel() as fake:
        yield fake
