"""GET /v1/jobs/{id}: the body read with Core statements equals the ORM-built JobDetail."""

from __future__ import annotations

import math

from fastapi.testclient import TestClient
from sqlalchemy import update

from services.jobs import job_detail
from services.settings import Settings
from services.store import jobs as job_store
from services.store.db import session_scope
from services.store.models import Job
from tests.services.api.conftest import IRIS_SPEC, TEA_SPEC, Train, submit


def orm_detail_json(settings: Settings, job_id: str) -> bytes:
    """Serialize the job's detail built from its ORM objects, the reference for the Core read."""
    with session_scope(settings.resolved_database_url, write=False) as session:
        job = session.get(Job, job_id)
        assert job is not None
        detail = job_detail(job, job_store.list_transitions(session, job_id))
    return detail.model_dump_json().encode()


def test_get_job_body_matches_orm_detail(
    client: TestClient, settings: Settings, train: Train
) -> None:
    """Queued, trained and failed jobs serialize to the same bytes as their ORM-built detail."""
    queued = submit(client, TEA_SPEC)
    trained = submit(client, IRIS_SPEC)
    train(trained["id"])
    failed = submit(client, TEA_SPEC)
    with session_scope(settings.resolved_database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id == failed["id"])
            .values(
                status="failed",
                stop_reason="error",
                error_type="FloatingPointError",
                error_message="overflow in dense_0",
                metrics={"train_loss": None, "val_loss": 2.5, "lr": 0.01},
                monitor="val_loss",
                best_epoch=3,
                best_value=math.inf,
                eta_seconds=math.nan,
            )
        )

    for job in (queued, trained, failed):
        response = client.get(f"/v1/jobs/{job['id']}")

        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.content == orm_detail_json(settings, job["id"])


def test_get_job_nulls_non_finite_values(client: TestClient, settings: Settings) -> None:
    """An infinite best value, a NaN ETA and a missing metric come back as JSON null.

    Metrics stay finite here: PostgreSQL's JSONB rejects NaN and infinity.
    """
    job = submit(client, TEA_SPEC)
    with session_scope(settings.resolved_database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id == job["id"])
            .values(
                metrics={"train_loss": None, "val_loss": 0.5},
                monitor="val_loss",
                best_epoch=1,
                best_value=math.inf,
                eta_seconds=math.nan,
            )
        )

    body = client.get(f"/v1/jobs/{job['id']}").json()

    assert body["metrics"] == {"train_loss": None, "val_loss": 0.5}
    assert body["best"] == {"epoch": 1, "monitor": "val_loss", "value": None}
    assert body["progress"]["eta_seconds"] is None
