"""Tenant isolation: a request for another tenant's resource gets exactly the response for
an unknown id, and no list, count, experiment name or metric crosses between tenants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.settings import Settings
from tests.services.api.conftest import IRIS_SPEC, Train, assert_problem, submit
from tests.services.auth import client_for
from tests.services.enqueue import RecordingEnqueue

SECRET_EXPERIMENT = "alpha-secret-experiment"
CSV = b"f1,f2,label\n0.1,0.2,a\n0.3,0.1,b\n0.5,0.9,a\n0.7,0.3,b\n0.2,0.8,a\n0.9,0.4,b\n"


@pytest.fixture
def tenants(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """Clients of one app for the tenants "alpha" and "beta", each with its own key."""
    app = create_app(settings)
    app.state.enqueue = RecordingEnqueue()
    with client_for(app, "alpha") as alpha, client_for(app, "beta") as beta:
        yield alpha, beta


@pytest.fixture
def alpha_work(tenants: tuple[TestClient, TestClient], train: Train) -> dict[str, str]:
    """Alpha's uploaded dataset, trained job and sweep, in an experiment of its own."""
    alpha, _ = tenants
    upload = alpha.post(
        "/v1/datasets", files={"file": ("points.csv", CSV)}, data={"name": "alpha points"}
    )
    assert upload.status_code == 201, upload.text
    job = submit(alpha, {**IRIS_SPEC, "experiment": SECRET_EXPERIMENT})
    assert train(job["id"]) == "succeeded"
    sweep = alpha.post(
        "/v1/sweeps",
        json={
            "base": {**IRIS_SPEC, "experiment": SECRET_EXPERIMENT},
            "parameters": {"optimizer.lr": {"values": [0.01, 0.02]}},
        },
    )
    assert sweep.status_code == 202, sweep.text
    return {"dataset": upload.json()["id"], "job": job["id"], "sweep": sweep.json()["id"]}


# Every request that names one resource, with the id as a placeholder.
JOB_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/jobs/{id}", {}),
    ("GET", "/v1/jobs/{id}/history", {}),
    ("GET", "/v1/jobs/{id}/events", {}),
    ("GET", "/v1/jobs/{id}/weights", {}),
    ("GET", "/v1/jobs/{id}/weights?format=json", {}),
    ("POST", "/v1/jobs/{id}/predict", {"json": {"inputs": [[5.1, 3.5, 1.4, 0.2]]}}),
    ("GET", "/v1/jobs/{id}/trace", {}),
    ("POST", "/v1/jobs/{id}/cancel", {}),
    ("DELETE", "/v1/jobs/{id}", {}),
]
DATASET_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/datasets/{id}", {}),
    ("DELETE", "/v1/datasets/{id}", {}),
]
SWEEP_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/sweeps/{id}", {}),
    ("POST", "/v1/sweeps/{id}/cancel", {}),
]


def _response_seen(
    client: TestClient, method: str, path: str, options: dict[str, Any], id_: str
) -> Any:
    """Send one request for ``id_`` and return what a client can see of the response,
    with the id itself masked so that responses for different ids compare equal."""
    response = client.request(method, path.format(id=id_), **options)
    problem = assert_problem(response, 404)
    visible = {key: value for key, value in problem.items() if key != "request_id"}
    visible["detail"] = visible["detail"].replace(id_, "<id>")
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("x-request-id", "content-length", "date")
    }
    return visible, headers


@pytest.mark.parametrize(
    ("kind", "method", "path", "options"),
    [("job", *request) for request in JOB_REQUESTS]
    + [("dataset", *request) for request in DATASET_REQUESTS]
    + [("sweep", *request) for request in SWEEP_REQUESTS],
)
def test_other_tenants_id_is_unknown(
    tenants: tuple[TestClient, TestClient],
    alpha_work: dict[str, str],
    kind: str,
    method: str,
    path: str,
    options: dict[str, Any],
) -> None:
    """Beta naming alpha's id gets the response it gets for an id that never existed."""
    alpha, beta = tenants
    unknown = uuid.uuid4().hex
    if kind == "dataset":
        unknown = "ds_" + unknown[:24]

    assert _response_seen(beta, method, path, options, alpha_work[kind]) == _response_seen(
        beta, method, path, options, unknown
    )
    # Nothing beta asked for touched alpha's resource.
    path_of_resource = {"job": "/v1/jobs/", "dataset": "/v1/datasets/", "sweep": "/v1/sweeps/"}
    assert alpha.get(path_of_resource[kind] + alpha_work[kind]).status_code == 200


def test_lists_show_own_work_only(
    tenants: tuple[TestClient, TestClient], alpha_work: dict[str, str]
) -> None:
    """Beta's lists hold none of alpha's jobs, sweeps, uploads or experiment names."""
    alpha, beta = tenants

    assert beta.get("/v1/jobs").json()["items"] == []
    assert beta.get("/v1/jobs", params={"experiment": SECRET_EXPERIMENT}).json()["items"] == []
    assert beta.get("/v1/sweeps").json()["items"] == []
    assert beta.get("/v1/experiments").json()["items"] == []
    beta_datasets = beta.get("/v1/datasets", params={"limit": 500}).json()["items"]
    assert all(item["source"] == "builtin" for item in beta_datasets)
    assert SECRET_EXPERIMENT not in beta.get("/v1/experiments").text

    alpha_experiments = [item["name"] for item in alpha.get("/v1/experiments").json()["items"]]
    assert alpha_experiments == [SECRET_EXPERIMENT]
    assert {item["id"] for item in alpha.get("/v1/jobs").json()["items"]} >= {alpha_work["job"]}


def test_other_tenants_dataset_is_unknown(
    tenants: tuple[TestClient, TestClient], alpha_work: dict[str, str]
) -> None:
    """Naming alpha's dataset in beta's spec fails like naming a dataset that does not exist."""
    _, beta = tenants
    spec = {**IRIS_SPEC, "dataset": alpha_work["dataset"]}
    unknown = {**IRIS_SPEC, "dataset": "ds_" + uuid.uuid4().hex[:24]}

    theirs = assert_problem(beta.post("/v1/jobs", json=spec), 422)
    missing = assert_problem(beta.post("/v1/jobs", json=unknown), 422)

    assert theirs["detail"].replace(spec["dataset"], "<id>") == missing["detail"].replace(
        unknown["dataset"], "<id>"
    )
    assert beta.get("/v1/jobs").json()["items"] == []


def test_idempotency_key_scoped_to_tenant(
    tenants: tuple[TestClient, TestClient],
) -> None:
    """An Idempotency-Key is scoped to its tenant: beta's retry never returns alpha's job."""
    alpha, beta = tenants
    key = "nightly-run-1"

    first = submit(alpha, IRIS_SPEC, **{"Idempotency-Key": key})
    second = submit(beta, IRIS_SPEC, **{"Idempotency-Key": key})

    assert first["id"] != second["id"]
    assert beta.get(f"/v1/jobs/{first['id']}").status_code == 404
