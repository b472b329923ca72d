"""Fixtures for the quota and limit tests: apps that record enqueued jobs, and row counts.

Each test runs in the embedded mode (SQLite) and the distributed mode (PostgreSQL and
Redis) through the ``configure`` fixture of ``tests/services/conftest.py``. No worker
runs, so submitted jobs stay queued; a test that needs running jobs claims them with
the worker's own ``runs.claim``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from services.api.app import create_app
from services.settings import Settings
from services.store import runs
from services.store.db import session_scope
from services.store.models import DatasetRow, Job
from tests.services.conftest import Configure
from tests.services.enqueue import RecordingEnqueue

# A spec that validates against the one-sample dataset and is never trained here.
TEA_SPEC: dict[str, Any] = {
    "dataset": "builtin:tea",
    "model": {"layers": [{"type": "dense", "units": 1, "bias": False}]},
    "loss": "squared_error",
    "optimizer": {"type": "sgd", "lr": 0.01},
    "training": {"epochs": 1, "batch_size": 1},
}

IRIS_SPEC: dict[str, Any] = {
    "dataset": "builtin:iris",
    "model": {
        "layers": [
            {"type": "dense", "units": 8, "activation": "relu"},
            {"type": "dense", "units": 3},
        ]
    },
    "training": {"epochs": 5, "batch_size": 16, "validation_split": 0.2},
}


@pytest.fixture
def enqueue() -> RecordingEnqueue:
    return RecordingEnqueue()


MakeApp = Callable[..., FastAPI]


@pytest.fixture
def make_app(configure: Configure, enqueue: RecordingEnqueue) -> Iterator[MakeApp]:
    """Return a function that builds the API with settings overrides and the recorder."""

    def make(**overrides: Any) -> FastAPI:
        app = create_app(configure(**overrides))
        app.state.enqueue = enqueue
        return app

    yield make


def count_jobs(settings: Settings, tenant: str, status: str | None = None) -> int:
    """Count the tenant's job rows, optionally of one status."""
    query = select(func.count()).select_from(Job).where(Job.tenant == tenant)
    if status is not None:
        query = query.where(Job.status == status)
    with session_scope(settings.resolved_database_url, write=False) as session:
        return int(session.scalar(query) or 0)


def count_datasets(settings: Settings) -> int:
    with session_scope(settings.resolved_database_url, write=False) as session:
        return int(session.scalar(select(func.count()).select_from(DatasetRow)) or 0)


def start_running(settings: Settings, job_id: str, eta_seconds: float | None = None) -> None:
    """Claim a queued job as a worker would, and report an ETA for it when given."""
    claim = runs.claim(
        job_id, "quota-test-worker", 60.0, database_url=settings.resolved_database_url
    )
    assert claim is not None, f"job {job_id} was not queued"
    if eta_seconds is not None:
        progress = runs.Progress(
            epoch=0,
            metrics={},
            eta_seconds=eta_seconds,
            monitor=None,
            best_epoch=None,
            best_value=None,
        )
        assert runs.flush(claim, [], progress).ok
