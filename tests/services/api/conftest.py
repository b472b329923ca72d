"""Fixtures for the API tests: a TestClient on the app, and a way to train a job.

The ``settings`` fixture (``tests/services/conftest.py``) runs each test in the
embedded mode (SQLite) and the distributed mode (PostgreSQL and Redis). Jobs are
trained by calling the worker's ``run_job`` in the test process, so no worker
process is needed. The message the API sends stays in the test broker, which is
purged before each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.settings import Settings
from services.worker.runner import run_job
from tests.services.auth import client_for

# The one-weight example: y_hat = w * x with x = 2, y = 10, w = 0.5 and one SGD step.
TEA_SPEC: dict[str, Any] = {
    "dataset": "builtin:tea",
    "model": {
        "layers": [
            {"type": "dense", "units": 1, "bias": False, "init": {"type": "constant", "value": 0.5}}
        ]
    },
    "loss": {"type": "squared_error", "reduction": "sum"},
    "optimizer": {"type": "sgd", "lr": 0.01},
    "training": {"epochs": 1, "batch_size": 1, "shuffle": False, "dtype": "float64"},
}

IRIS_SPEC: dict[str, Any] = {
    "experiment": "iris",
    "dataset": "builtin:iris",
    "model": {
        "layers": [
            {"type": "dense", "units": 8, "activation": "relu"},
            {"type": "dense", "units": 3},
        ]
    },
    "optimizer": {"type": "adam", "lr": 0.02},
    "training": {"epochs": 5, "batch_size": 16, "validation_split": 0.2, "seed": 1},
    "preprocessing": {"standardize": True},
}

Train = Callable[[str], str]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client for an app on this mode's database and broker."""
    with client_for(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def train(settings: Settings) -> Train:
    """Return a function that trains a queued job to its end and returns its final status."""

    def train_job(job_id: str) -> str:
        return run_job(job_id, worker_id="test-worker", settings=settings)

    return train_job


def submit(client: TestClient, spec: dict[str, Any], **headers: str) -> dict[str, Any]:
    """POST a spec, check the 202, and return the job."""
    response = client.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """Check that ``response`` is a problem-details error with ``status``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    assert problem["type"].startswith("urn:steep:problem:")
    return problem
