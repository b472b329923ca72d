"""``/metrics`` against a real database in each mode: values move with the work done."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.settings import Settings
from services.store import counters, runs
from services.store.db import session_scope
from services.store.models import utcnow
from services.worker.reaper import reap_once
from services.worker.runner import run_job
from tests.services.api.conftest import assert_problem
from tests.services.auth import bearer, client_for, tenant_key
from tests.services.conftest import Configure
from tests.services.operations.helpers import (
    XOR_SAMPLES,
    XOR_SPEC,
    operator_client,
    read_metrics,
    value,
)
from tests.services.worker.helpers import TEA_SPEC, create_job, update_job

LATENCY_COUNT = "steep_http_request_duration_seconds_count"


@pytest.fixture
def operator(settings: Settings) -> Iterator[TestClient]:
    with operator_client(create_app(settings)) as client:
        yield client


def _read_counters(settings: Settings) -> dict[str, int]:
    with session_scope(settings.resolved_database_url, write=False) as session:
        return counters.read_counters(session)


def test_metrics_move_as_job_trains(settings: Settings, operator: TestClient) -> None:
    """A job trained to the end adds its epochs, samples and renewals, and moves its status."""
    before = read_metrics(operator)
    job_id = operator.post("/v1/jobs", json=XOR_SPEC).json()["id"]
    queued = read_metrics(operator)

    status = run_job(job_id, worker_id="test-worker", settings=settings)
    operator.get(f"/v1/jobs/{job_id}")
    after = read_metrics(operator)

    assert status == "succeeded"
    assert value(queued, "steep_queue_depth") == value(before, "steep_queue_depth") + 1
    assert value(queued, "steep_jobs", status="queued") == 1
    assert value(after, "steep_queue_depth") == 0
    assert value(after, "steep_jobs", status="succeeded") == 1
    assert value(after, "steep_running_jobs") == 0
    epochs = XOR_SPEC["training"]["epochs"]
    assert value(after, "steep_epochs_trained_total") == epochs
    assert value(after, "steep_samples_trained_total") == epochs * XOR_SAMPLES
    assert value(after, "steep_lease_renewals_total") >= 2
    job_route = {"method": "GET", "route": "/v1/jobs/{job_id}", "status_class": "2xx"}
    assert value(after, LATENCY_COUNT, **job_route) == value(before, LATENCY_COUNT, **job_route) + 1
    submit_route = {"method": "POST", "route": "/v1/jobs", "status_class": "2xx"}
    assert value(after, LATENCY_COUNT, **submit_route) == 1


def test_running_job_gauges(settings: Settings, operator: TestClient) -> None:
    """A running job counts as running, its throughput adds up, and queued jobs are the queue."""
    running_id = create_job(settings, XOR_SPEC)
    create_job(settings, XOR_SPEC)
    claim = runs.claim(running_id, "test-worker", 10.0, database_url=settings.resolved_database_url)
    assert claim is not None
    progress = runs.Progress(3, {"train_loss": 0.5, "epoch_seconds": 0.5}, None, None, None, None)
    records = [{"epoch": epoch, "train_loss": 0.5} for epoch in (1, 2, 3)]

    assert runs.flush(claim, records, progress, samples_per_epoch=XOR_SAMPLES).ok
    samples = read_metrics(operator)

    assert value(samples, "steep_running_jobs") == 1
    assert value(samples, "steep_queue_depth") == 1
    assert value(samples, "steep_samples_per_second") == XOR_SAMPLES / 0.5
    assert value(samples, "steep_epochs_trained_total") == 3
    assert value(samples, "steep_samples_trained_total") == 3 * XOR_SAMPLES
    assert value(samples, "steep_lease_renewals_total") == 1


def test_flush_retry_counts_epochs_once(settings: Settings) -> None:
    """A flush sent again after a lost acknowledgement counts its epochs once; a stale
    attempt's flush counts nothing."""
    job_id = create_job(settings, XOR_SPEC)
    url = settings.resolved_database_url
    first = runs.claim(job_id, "worker-a", 10.0, database_url=url)
    assert first is not None
    records = [{"epoch": 1, "train_loss": 0.7}, {"epoch": 2, "train_loss": 0.6}]
    progress = runs.Progress(2, {"train_loss": 0.6}, None, None, None, None)

    runs.flush(first, records, progress, samples_per_epoch=XOR_SAMPLES)
    runs.flush(first, records, progress, samples_per_epoch=XOR_SAMPLES)
    once = _read_counters(settings)
    update_job(settings, job_id, status="queued", lease_expires_at=None)
    second = runs.claim(job_id, "worker-b", 10.0, database_url=url)
    assert second is not None
    stale = runs.flush(first, [{"epoch": 3, "train_loss": 0.5}], samples_per_epoch=XOR_SAMPLES)

    assert once[counters.EPOCHS_TRAINED] == 2
    assert once[counters.SAMPLES_TRAINED] == 2 * XOR_SAMPLES
    assert once[counters.LEASE_RENEWALS] == 2
    assert not stale.ok
    assert _read_counters(settings) == once


def test_reaped_lease_counted(settings: Settings, operator: TestClient) -> None:
    """The reaper's requeue of an expired lease adds one to jobs reaped with status queued."""
    job_id = create_job(settings, TEA_SPEC)
    claim = runs.claim(job_id, "worker-a", 10.0, database_url=settings.resolved_database_url)
    assert claim is not None
    update_job(settings, job_id, lease_expires_at=utcnow() - timedelta(seconds=1))
    before = read_metrics(operator)

    report = reap_once(settings)
    after = read_metrics(operator)

    assert report.requeued == [job_id]
    reaped = "steep_jobs_reaped_total"
    assert value(after, reaped, status="queued") == value(before, reaped, status="queued") + 1
    assert value(after, reaped, status="failed") == value(before, reaped, status="failed")


def test_metrics_name_no_tenant_or_job(settings: Settings) -> None:
    """No label or value of /metrics names a tenant, an experiment, a job or a raw path."""
    app = create_app(settings)
    with client_for(app, "alpha-tenant") as alpha, operator_client(app) as operator:
        job_id = alpha.post("/v1/jobs", json=XOR_SPEC).json()["id"]
        alpha.get(f"/v1/jobs/{job_id}")
        alpha.get("/no-such-path-a1b2")
        text = operator.get("/metrics").text

    for secret in ("alpha-tenant", XOR_SPEC["experiment"], job_id, "a1b2"):
        assert secret not in text
    assert 'route="unmatched"' in text


def test_metrics_needs_operator_key(configure: Configure) -> None:
    """Where keys are required, /metrics is a 401 without a key and a 403 with a tenant's."""
    settings = configure(require_keys=True)
    app = create_app(settings)
    tenant_headers = bearer(tenant_key(settings, "alpha"))

    with TestClient(app) as anonymous, operator_client(app) as operator:
        missing = anonymous.get("/metrics")
        tenant = anonymous.get("/metrics", headers=tenant_headers)
        allowed = operator.get("/metrics")

    assert_problem(missing, 401)
    assert_problem(tenant, 403)
    assert allowed.status_code == 200


def test_startup_log_names_metrics_key(
    configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    """Where keys are required, the startup log names /metrics and its operator key too."""
    settings = configure(require_keys=True)

    with caplog.at_level("INFO", logger="services.api.app"):
        create_app(settings)

    assert (
        "API keys are required on every /v1 and /metrics request (steep keys create), "
        "and /metrics takes only operator keys (steep keys create --operator)"
    ) in caplog.messages
