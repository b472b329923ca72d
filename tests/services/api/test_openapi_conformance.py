"""The API against its own OpenAPI document, fuzzed with schemathesis.

Every operation in ``/openapi.json`` gets generated requests. They are the examples
the document declares, schemathesis' coverage cases (boundary values and invalid
inputs of each parameter and body field), and random valid and invalid inputs. A
fixed seed makes every run send the same requests. No response may be a 5xx, and
each status code, content type and body must be one the document declares for
that operation.

The app runs in process on the embedded mode's SQLite database, with a key of the
tenant ``local``. Jobs are recorded instead of enqueued, so no worker runs. Path
ids are random strings in ``test_operations_conform``, which reaches the
unknown-id paths. ``test_operations_on_existing_ids_conform`` replaces them with the
ids of a trained job, an uploaded dataset and a sweep, which reaches the paths that
read and change existing resources. No stateful tests (chains of calls through
OpenAPI links) run, because the document declares no links.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.app import create_app
from services.api.problems import PROBLEM_MEDIA_TYPE
from services.settings import Settings
from services.worker.runner import run_job
from tests.services.api.conftest import IRIS_SPEC, TEA_SPEC, assert_problem
from tests.services.auth import bearer, client_for, tenant_key
from tests.services.enqueue import RecordingEnqueue

EMBEDDED_ONLY = pytest.mark.parametrize("mode", ["embedded"], indirect=True)

# Examples per operation in the fuzzing phase; the coverage phase adds its own cases.
# With 12, the file took about 33 s of CPU time on a 2-core x86-64 VM, most of it in
# the coverage cases of POST /v1/jobs and POST /v1/sweeps.
MAX_EXAMPLES = 12
SEED = 20240608

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

CSV_DATASET = b"x1,x2,label\n" + b"".join(
    f"{i % 7},{(i * 3) % 5},{'yes' if i % 2 else 'no'}\n".encode() for i in range(40)
)


@dataclass(frozen=True)
class SeededApp:
    """The app under test, the key it is called with, and the ids of existing resources."""

    app: FastAPI
    headers: dict[str, str]
    path_ids: dict[str, str]


# The document does not depend on the settings, so it is read once, at collection, from an
# app that never touches its database. Each test calls its own app on the test database.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(database_url="sqlite://"))
)
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)
schema.config.seed = SEED

# The seeded app is built once per operation and shared by its examples on purpose: after
# a DELETE succeeds, the rest of that operation's examples get 404s, which must conform too.
ONE_APP_PER_OPERATION = hypothesis.settings(
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def seeded_app(settings: Settings) -> Iterator[SeededApp]:
    """An app whose tenant has a trained job, an uploaded dataset and a sweep with queued
    trials. The responses that created them are checked against the document too."""
    app = create_app(settings)
    app.state.enqueue = RecordingEnqueue()
    with client_for(app) as client:
        trained = client.post("/v1/jobs", json=TEA_SPEC)
        run_job(trained.json()["id"], worker_id="conformance", settings=settings)
        upload = client.post(
            "/v1/datasets",
            files={"file": ("points.csv", CSV_DATASET, "text/csv")},
            data={"target": "label"},
        )
        sweep = client.post(
            "/v1/sweeps",
            json={"base": IRIS_SPEC, "parameters": {"optimizer.lr": {"values": [0.1, 0.01]}}},
        )
    for response, status, path in (
        (trained, 202, "/v1/jobs"),
        (upload, 201, "/v1/datasets"),
        (sweep, 202, "/v1/sweeps"),
    ):
        assert response.status_code == status, response.text
        schema[path]["POST"].validate_response(response)
    path_ids = {
        "job_id": trained.json()["id"],
        "dataset_id": upload.json()["id"],
        "sweep_id": sweep.json()["id"],
    }
    yield SeededApp(app, bearer(tenant_key(settings)), path_ids)


@EMBEDDED_ONLY
@schema.parametrize()
@ONE_APP_PER_OPERATION
def test_operations_conform(case: schemathesis.Case, seeded_app: SeededApp) -> None:
    """No generated request gets a 5xx or a response the document does not declare."""
    case.call_and_validate(app=seeded_app.app, headers=seeded_app.headers, checks=CHECKS)


@EMBEDDED_ONLY
@schema.include(path_regex=r"\{").parametrize()
@ONE_APP_PER_OPERATION
def test_operations_on_existing_ids_conform(case: schemathesis.Case, seeded_app: SeededApp) -> None:
    """The same, with path ids that name the tenant's trained job, dataset and sweep."""
    for name in case.path_parameters:
        case.path_parameters[name] = seeded_app.path_ids[name]
    case.call_and_validate(app=seeded_app.app, headers=seeded_app.headers, checks=CHECKS)


# Regression tests for what the fuzzing found ------------------------------------------


def test_document_declares_problem_details_for_errors() -> None:
    """Every 4xx and 5xx entry declares the Problem schema for application/problem+json,
    and no 422 keeps FastAPI's default entry, whose JSON body steep never sends."""
    document = create_app(Settings(database_url="sqlite://")).openapi()

    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, entry in operation["responses"].items():
                if int(status) < 400:
                    continue
                content = entry["content"][PROBLEM_MEDIA_TYPE]
                assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, (
                    method,
                    path,
                    status,
                )


@EMBEDDED_ONLY
def test_overlong_path_id_is_documented_422(client: TestClient) -> None:
    """A 65-character job id breaks the path's maxLength: a 422 the document declares."""
    url = "/v1/jobs/" + "0" * 65

    response = client.get(url)

    assert_problem(response, 422)
    schema["/v1/jobs/{job_id}"]["GET"].validate_response(response)


@EMBEDDED_ONLY
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/sweeps", "/v1/jobs/unknown/predict"])
def test_body_not_utf8_is_documented_400(client: TestClient, path: str) -> None:
    """A JSON body that is not UTF-8 (here a quote and half a character) is a 400 that
    names the encoding, and each operation with a JSON body declares the 400."""
    response = client.post(path, content=b"'\xef", headers={"Content-Type": "application/json"})

    problem = assert_problem(response, 400)
    assert "UTF-8" in problem["detail"]
    template = path.replace("unknown", "{job_id}")
    assert "400" in schema.raw_schema["paths"][template]["post"]["responses"]
