"""``sidecar/openapi.yaml`` documents every endpoint the sidecar answers itself, is valid
OpenAPI 3, and is served at ``/_sidecar/openapi.yaml``."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import yaml

from devtools.fakes import FaultES, FaultModel
from sidecar.app import create_app
from sidecar.config import build_config
from tests.support.apps import running_sidecar
from tests.support.search import base_config

OPENAPI = Path(__file__).resolve().parents[2] / "sidecar" / "openapi.yaml"
#: The debug UI documents itself (tests/ui); the catch-all route is ES's whole API.
UNDOCUMENTED = ("/_sidecar/ui", "/{tail")
#: The rest of /_sidecar/: the sidecar's 404 (never passed to ES), not an endpoint.
NAMESPACE = ("/_sidecar{tail}",)


def test_every_own_route_is_documented() -> None:
    doc = yaml.safe_load(OPENAPI.read_text())
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    app = create_app(build_config({}))
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or path.startswith(UNDOCUMENTED) or path in NAMESPACE:
            continue
        routes.add((route.method, path))
    assert routes - documented == set()
    assert documented - routes == set()


def test_the_document_validates_and_is_served(fault_es: FaultES, fault_model: FaultModel) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_path(OPENAPI)
    assert len([r.ok() for r in schema.get_all_operations()]) >= 20


async def test_served_at_sidecar_openapi_yaml(fault_es: FaultES, fault_model: FaultModel) -> None:
    config = base_config(fault_es.url, model={"name": fault_model.url})
    async with (
        running_sidecar(config, wait_model=False) as sc,
        aiohttp.ClientSession() as s,
        s.get(f"{sc.url}/_sidecar/openapi.yaml") as r,
    ):
        assert r.status == 200
        assert r.content_type == "application/yaml"
        assert yaml.safe_load(await r.text()) == yaml.safe_load(OPENAPI.read_text())
