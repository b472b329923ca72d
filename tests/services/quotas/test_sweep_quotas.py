"""Sweeps under the quotas: max_parallel bounded by the running quota, every trial checked
against the per-job limits at creation, and trials that wait while the tenant is at a quota."""

from __future__ import annotations

import copy
from typing import Any

from services.worker.sweeper import advance_sweeps
from tests.services.api.conftest import assert_problem
from tests.services.auth import client_for
from tests.services.quotas.conftest import (
    IRIS_SPEC,
    TEA_SPEC,
    MakeApp,
    RecordingEnqueue,
    count_jobs,
    start_running,
)


def sweep_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "base": copy.deepcopy(IRIS_SPEC),
        "parameters": {"optimizer.lr": {"values": [0.1, 0.03, 0.01, 0.003]}},
        "max_parallel": 2,
    }
    body.update(changes)
    return body


def test_max_parallel_above_running_quota_rejected(make_app: MakeApp) -> None:
    """max_parallel above max_running_jobs_per_tenant is a 422 at max_parallel."""
    app = make_app(max_running_jobs_per_tenant=3)
    with client_for(app, tenant="tenant-a") as client:
        response = client.post("/v1/sweeps", json=sweep_body(max_parallel=4))

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "max_parallel"]
    assert "max_parallel is 4" in problem["detail"]
    assert "limit of 3 running jobs per tenant" in problem["detail"]
    assert count_jobs(app.state.settings, "tenant-a") == 0


def test_trial_over_job_limit_rejected(make_app: MakeApp) -> None:
    """A trial whose model is above max_parameters makes the sweep a 422 naming the parameter."""
    app = make_app(max_parameters=500)
    body = sweep_body(parameters={"model.layers.0.units": {"values": [8, 64]}})
    with client_for(app, tenant="tenant-a") as client:
        response = client.post("/v1/sweeps", json=body)
        listed = client.get("/v1/sweeps").json()["items"]

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "parameters", "model.layers.0.units"]
    assert "trial 1 (model.layers.0.units=64)" in problem["detail"]
    assert "515 parameters" in problem["detail"]
    assert listed == []
    assert count_jobs(app.state.settings, "tenant-a") == 0


def test_trials_wait_while_tenant_at_queued_quota(
    make_app: MakeApp, enqueue: RecordingEnqueue
) -> None:
    """Trials start only into the tenant's free queued places. The sweeper then waits with
    the sweep running, and starts the next trial once a place is free."""
    app = make_app(max_queued_jobs_per_tenant=2)
    settings = app.state.settings
    with client_for(app, tenant="tenant-a") as client:
        plain_job = client.post("/v1/jobs", json=TEA_SPEC).json()["id"]
        sweep = client.post("/v1/sweeps", json=sweep_body(max_parallel=2))
        assert sweep.status_code == 202, sweep.text
        sweep_id = sweep.json()["id"]

        waiting = advance_sweeps(settings, enqueue=enqueue)
        counts_waiting = client.get(f"/v1/sweeps/{sweep_id}").json()["counts"]
        assert client.post(f"/v1/jobs/{plain_job}/cancel").status_code == 202
        resumed = advance_sweeps(settings, enqueue=enqueue)
        detail = client.get(f"/v1/sweeps/{sweep_id}").json()

    assert counts_waiting == {"queued": 1, "pending": 3}
    assert waiting.started == []
    assert waiting.errors == []
    assert len(resumed.started) == 1
    assert detail["status"] == "running"
    assert detail["counts"] == {"queued": 2, "pending": 2}
    assert count_jobs(settings, "tenant-a", "queued") == 2


def test_trials_wait_while_tenant_at_running_quota(
    make_app: MakeApp, enqueue: RecordingEnqueue
) -> None:
    """No trial starts while the tenant has max_running_jobs_per_tenant jobs running."""
    app = make_app(max_running_jobs_per_tenant=2)
    settings = app.state.settings
    with client_for(app, tenant="tenant-a") as client:
        plain_jobs = [client.post("/v1/jobs", json=TEA_SPEC).json()["id"] for _ in range(2)]
        for job_id in plain_jobs:
            start_running(settings, job_id)
        sweep_id = client.post("/v1/sweeps", json=sweep_body(max_parallel=2)).json()["id"]

        report = advance_sweeps(settings, enqueue=enqueue)
        detail = client.get(f"/v1/sweeps/{sweep_id}").json()

    assert report.started == []
    assert report.errors == []
    assert detail["status"] == "running"
    assert detail["counts"] == {"pending": 4}
    assert enqueue.sent == plain_jobs
