"""schemathesis against the service's OpenAPI document, on a real server process (loopback).

Every operation gets generated requests, valid and invalid; the checks: never a 5xx, only documented
status codes, the documented content type, responses (errors included) that match their schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from service_support import Server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("schema") / "state.sqlite"
    args = ("--budget", "0.2", "--tick", "0.2", "--max-solve-time", "0.3", "--max-body", "65536")
    srv = Server(db, args=args).start()
    with httpx.Client(base_url=srv.url) as c:
        c.post("/v1/nodes", json={"name": "n0", "cpu": "16", "memory": "64Gi", "gpus": 2, "gpu_model": "A100"})
        c.post("/v1/jobs", json={"name": "j0", "gpus": 1})
    yield srv
    srv.kill()


OPERATIONS = [
    ("POST", "/v1/solve"),
    ("GET", "/v1/nodes"),
    ("POST", "/v1/nodes"),
    ("GET", "/v1/nodes/{name}"),
    ("PUT", "/v1/nodes/{name}"),
    ("DELETE", "/v1/nodes/{name}"),
    ("POST", "/v1/nodes/{name}/drain"),
    ("POST", "/v1/nodes/{name}/undrain"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs:batch"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{name}"),
    ("DELETE", "/v1/jobs/{name}"),
    ("GET", "/v1/plan"),
    ("GET", "/v1/cluster"),
    ("POST", "/v1/observations"),
    ("POST", "/k8s/filter"),
    ("POST", "/k8s/prioritize"),
    ("GET", "/ui"),
    ("GET", "/ui/fragment"),
    ("GET", "/ui/static/{name}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


@pytest.mark.slow
def test_every_operation_is_listed(server: Server) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    found = {(r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_conforms_to_its_openapi(server: Server, method: str, path: str) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operation = schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=30)

    run()


def test_openapi_document_is_served(server: Server) -> None:
    doc = httpx.get(server.url + "/openapi.json").json()
    assert doc["info"]["title"] == "optalloc"
    for path in ("/v1/solve", "/v1/jobs", "/v1/jobs/{name}", "/v1/plan", "/k8s/filter", "/k8s/prioritize"):
        assert path in doc["paths"], path
