"""Per-tenant job quotas at POST /v1/jobs: 429 with a sentence naming the count and the
limit, nothing stored, other tenants still served, and no race at the last free place."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient

from services import jobs
from services.errors import QuotaExceeded
from services.schemas import JobCreate
from tests.services.api.conftest import assert_problem
from tests.services.auth import client_for
from tests.services.quotas.conftest import (
    TEA_SPEC,
    MakeApp,
    RecordingEnqueue,
    count_jobs,
    start_running,
)


def submit(client: TestClient, spec: dict[str, Any] = TEA_SPEC, **headers: str) -> Any:
    return client.post("/v1/jobs", json=spec, headers=headers)


def assert_other_tenant_served(app: Any) -> None:
    """Tenant B submits a job and reads it back while tenant A is at a quota."""
    with client_for(app, tenant="tenant-b") as other:
        created = submit(other)
        assert created.status_code == 202, created.text
        read = other.get(f"/v1/jobs/{created.json()['id']}")
        assert read.status_code == 200, read.text
        assert read.json()["status"] == "queued"


def test_queued_quota_rejects_submit(make_app: MakeApp) -> None:
    """At max_queued_jobs_per_tenant queued jobs, a submit is a 429 that names the quota."""
    app = make_app(max_queued_jobs_per_tenant=2)
    settings = app.state.settings
    with client_for(app, tenant="tenant-a") as client:
        for _ in range(2):
            assert submit(client).status_code == 202

        response = submit(client)

    problem = assert_problem(response, 429)
    assert problem["type"] == "urn:steep:problem:too-many-requests"
    assert "has 2 jobs queued" in problem["detail"]
    assert "allows 2 per tenant" in problem["detail"]
    assert "STEEP_MAX_QUEUED_JOBS_PER_TENANT" in problem["detail"]
    assert "Retry-After" not in response.headers
    assert count_jobs(settings, "tenant-a") == 2
    assert_other_tenant_served(app)


def test_running_quota_rejects_submit_with_retry_after(make_app: MakeApp) -> None:
    """At max_running_jobs_per_tenant running jobs, a submit is a 429 whose Retry-After is
    the soonest ETA of those jobs."""
    app = make_app(max_running_jobs_per_tenant=2)
    settings = app.state.settings
    with client_for(app, tenant="tenant-a") as client:
        first, second = (submit(client).json()["id"] for _ in range(2))
        start_running(settings, first, eta_seconds=41.2)
        start_running(settings, second, eta_seconds=300.0)

        response = submit(client)

    problem = assert_problem(response, 429)
    assert "has 2 jobs running" in problem["detail"]
    assert "allows 2 per tenant" in problem["detail"]
    assert "about 42 s" in problem["detail"]
    assert response.headers["Retry-After"] == "42"
    assert count_jobs(settings, "tenant-a") == 2
    assert_other_tenant_served(app)


def test_quota_message_singular_job(make_app: MakeApp) -> None:
    """At quotas of one job, the 429's detail contains "1 job", not "1 jobs"."""
    app = make_app(max_running_jobs_per_tenant=1, max_queued_jobs_per_tenant=1)
    with client_for(app, tenant="tenant-a") as client:
        first = submit(client).json()["id"]
        queued_response = submit(client)
        start_running(app.state.settings, first)
        running_response = submit(client)

    assert "has 1 job queued," in assert_problem(queued_response, 429)["detail"]
    assert "has 1 job running," in assert_problem(running_response, 429)["detail"]


def test_running_quota_counts_only_running_jobs(make_app: MakeApp) -> None:
    """Queued jobs do not count against the running quota: below it a submit succeeds."""
    app = make_app(max_running_jobs_per_tenant=1, max_queued_jobs_per_tenant=10)
    with client_for(app, tenant="tenant-a") as client:
        for _ in range(3):
            response = submit(client)

    assert response.status_code == 202, response.text


def test_idempotent_replay_at_quota_returns_job(make_app: MakeApp) -> None:
    """A retry with the same Idempotency-Key gets the job it created, even at the quota."""
    app = make_app(max_queued_jobs_per_tenant=1)
    with client_for(app, tenant="tenant-a") as client:
        created = submit(client, **{"Idempotency-Key": "retry-1"})

        replayed = submit(client, **{"Idempotency-Key": "retry-1"})
        rejected = submit(client, **{"Idempotency-Key": "retry-2"})

    assert created.status_code == 202, created.text
    assert replayed.status_code == 202, replayed.text
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json()["id"] == created.json()["id"]
    assert rejected.status_code == 429


def test_concurrent_submits_fill_quota_exactly(
    make_app: MakeApp, enqueue: RecordingEnqueue
) -> None:
    """Eight submits at once against a queued quota of 3 create exactly 3 jobs."""
    n_threads, quota = 8, 3
    app = make_app(max_queued_jobs_per_tenant=quota)
    settings = app.state.settings
    spec = JobCreate.model_validate(TEA_SPEC)
    barrier = threading.Barrier(n_threads)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit_one() -> None:
        barrier.wait()
        try:
            jobs.create_job(settings, "tenant-a", spec, enqueue)
            outcome = "created"
        except QuotaExceeded:
            outcome = "rejected"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit_one) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(outcomes) == n_threads
    assert outcomes.count("created") == quota
    assert outcomes.count("rejected") == n_threads - quota
    assert count_jobs(settings, "tenant-a") == quota
    assert len(enqueue.sent) == quota
