"""Cancelling and deleting jobs, and 404s for unknown ids."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from tests.services.api.conftest import TEA_SPEC, Train, assert_problem, submit


def test_cancel_queued_job(client: TestClient, train: Train) -> None:
    """A queued job is cancelled at once, and a worker's later claim skips it."""
    job = submit(client, TEA_SPEC)

    response = client.post(f"/v1/jobs/{job['id']}/cancel")

    cancelled = response.json()
    assert response.status_code == 202
    assert cancelled["status"] == "cancelled"
    assert cancelled["stop_reason"] == "cancelled"
    assert cancelled["finished_at"] is not None
    assert [t["status"] for t in cancelled["transitions"]] == ["queued", "cancelled"]
    assert train(job["id"]) == "skipped"
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"


def test_cancel_finished_job_conflicts(client: TestClient, train: Train) -> None:
    """Cancelling a succeeded or an already cancelled job is a 409 naming its status."""
    finished = submit(client, TEA_SPEC)
    train(finished["id"])
    cancelled = submit(client, TEA_SPEC)
    client.post(f"/v1/jobs/{cancelled['id']}/cancel")

    first = client.post(f"/v1/jobs/{finished['id']}/cancel")
    second = client.post(f"/v1/jobs/{cancelled['id']}/cancel")

    assert "succeeded" in assert_problem(first, 409)["detail"]
    assert "cancelled" in assert_problem(second, 409)["detail"]


def test_delete_finished_job_removes_everything(client: TestClient, train: Train) -> None:
    """DELETE is a 204; afterwards the job, its history and its weights are 404s."""
    job = submit(client, TEA_SPEC)
    train(job["id"])

    response = client.delete(f"/v1/jobs/{job['id']}")

    assert response.status_code == 204
    assert response.content == b""
    for path in ("", "/history", "/weights"):
        assert_problem(client.get(f"/v1/jobs/{job['id']}{path}"), 404)
    assert client.get("/v1/jobs").json()["items"] == []


def test_delete_queued_job(client: TestClient, train: Train) -> None:
    """A queued job can be deleted; its message then finds nothing to run."""
    job = submit(client, TEA_SPEC)

    response = client.delete(f"/v1/jobs/{job['id']}")

    assert response.status_code == 204
    assert train(job["id"]) == "skipped"


def test_delete_running_job_conflicts(client: TestClient, train: Train) -> None:
    """Deleting a running job is a 409 whose message tells the client to cancel it first."""
    spec = {**TEA_SPEC, "training": {**TEA_SPEC["training"], "epochs": 100_000}}
    spec["optimizer"] = {"type": "sgd", "lr": 0.001}
    job = submit(client, spec)
    worker = threading.Thread(target=train, args=(job["id"],))
    worker.start()
    try:
        _wait_for_status(client, job["id"], "running")
        response = client.delete(f"/v1/jobs/{job['id']}")
    finally:
        client.post(f"/v1/jobs/{job['id']}/cancel")
        worker.join(timeout=30)

    problem = assert_problem(response, 409)
    assert "cancel" in problem["detail"]
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204


def _wait_for_status(client: TestClient, job_id: str, status: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if client.get(f"/v1/jobs/{job_id}").json()["status"] == status:
            return
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not reach status {status} within 20 s")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs/unknown"),
        ("GET", "/v1/jobs/unknown/history"),
        ("GET", "/v1/jobs/unknown/events"),
        ("POST", "/v1/jobs/unknown/cancel"),
        ("GET", "/v1/jobs/unknown/weights"),
        ("GET", "/v1/jobs/unknown/trace"),
        ("DELETE", "/v1/jobs/unknown"),
        ("GET", "/v1/datasets/unknown"),
        ("GET", "/v1/datasets/builtin:unknown"),
    ],
)
def test_unknown_id_is_not_found(client: TestClient, method: str, path: str) -> None:
    """Every endpoint returns a 404 problem naming the id for an unknown id."""
    response = client.request(method, path)

    problem = assert_problem(response, 404)
    assert "unknown" in problem["detail"]


def test_predict_unknown_job_is_not_found(client: TestClient) -> None:
    """Predicting with an unknown job is a 404, given a valid body."""
    response = client.post("/v1/jobs/unknown/predict", json={"inputs": [[1.0]]})

    assert_problem(response, 404)
