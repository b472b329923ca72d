"""The running quota at claim time: a worker leaves a tenant's job queued while the tenant
runs as many jobs as it may, serves other tenants meanwhile, and runs the job later."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from sqlalchemy import select

from services.settings import Settings
from services.store import runs
from services.store.db import session_scope
from services.store.models import Job, Transition
from services.worker.runner import run_job
from tests.services.auth import client_for
from tests.services.quotas.conftest import TEA_SPEC, MakeApp, start_running


def _submit(client: TestClient) -> str:
    response = client.post("/v1/jobs", json=TEA_SPEC)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _row(settings: Settings, job_id: str) -> tuple[str, int]:
    """Return the job's status and its number of transitions."""
    with session_scope(settings.resolved_database_url, write=False) as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        transitions = session.scalars(select(Transition.id).where(Transition.job_id == job_id))
        return str(status), len(list(transitions))


def test_worker_defers_job_at_running_quota(make_app: MakeApp) -> None:
    """With one running job allowed, the tenant's second job waits; another tenant's runs."""
    app = make_app(max_running_jobs_per_tenant=1)
    settings: Settings = app.state.settings
    with client_for(app, "alpha") as alpha, client_for(app, "beta") as beta:
        first, second = _submit(alpha), _submit(alpha)
        other = _submit(beta)
    start_running(settings, first)

    outcome = run_job(second, worker_id="worker-b", settings=settings)

    assert outcome == "deferred"
    assert _row(settings, second) == ("queued", 1)
    assert run_job(other, worker_id="worker-c", settings=settings) == "succeeded"


def test_deferred_job_runs_after_slot_frees(make_app: MakeApp) -> None:
    app = make_app(max_running_jobs_per_tenant=1)
    settings: Settings = app.state.settings
    with client_for(app, "alpha") as alpha:
        first, second = _submit(alpha), _submit(alpha)
    start_running(settings, first)
    assert run_job(second, worker_id="worker-b", settings=settings) == "deferred"

    with session_scope(settings.resolved_database_url) as session:
        session.get(Job, first).status = "cancelled"  # type: ignore[union-attr]

    assert run_job(second, worker_id="worker-b", settings=settings) == "succeeded"


def test_concurrent_claims_respect_running_quota(make_app: MakeApp) -> None:
    """Workers claiming one tenant's jobs at once start no more than its quota."""
    app = make_app(max_running_jobs_per_tenant=2, max_queued_jobs_per_tenant=10)
    settings: Settings = app.state.settings
    with client_for(app, "alpha") as alpha:
        job_ids = [_submit(alpha) for _ in range(6)]
    results: list[object] = []
    barrier = threading.Barrier(len(job_ids))

    def take(job_id: str) -> None:
        barrier.wait()
        results.append(
            runs.claim(
                job_id,
                f"worker-{job_id[:6]}",
                60.0,
                database_url=settings.resolved_database_url,
                max_running_per_tenant=2,
            )
        )

    threads = [threading.Thread(target=take, args=(job_id,)) for job_id in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    claimed = [result for result in results if isinstance(result, runs.Claim)]
    deferred = [result for result in results if isinstance(result, runs.Deferred)]
    assert len(claimed) == 2
    assert len(deferred) == 4
