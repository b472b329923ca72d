"""Specs, and functions that create and read job rows the way the API does, for worker tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from services.settings import Settings
from services.store.db import session_scope
from services.store.models import HistoryRow, Job, Transition, Weights, utcnow

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

DIGITS_SPEC: dict[str, Any] = {
    "name": "digits-mlp",
    "dataset": "builtin:digits",
    "model": {
        "layers": [
            {"type": "dense", "units": 64, "activation": "relu"},
            {"type": "dropout", "rate": 0.1},
            {"type": "dense", "units": 10},
        ]
    },
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.002},
    "training": {"epochs": 20, "batch_size": 32, "seed": 0, "validation_split": 0.2},
    "preprocessing": {"standardize": True},
}


def long_spec(epochs: int = 5000) -> dict[str, Any]:
    """A digits spec that trains for minutes unless something stops it."""
    spec = {**DIGITS_SPEC, "training": {**DIGITS_SPEC["training"], "epochs": epochs}}
    spec["training"].pop("validation_split")
    return spec


def create_job(settings: Settings, spec: dict[str, Any], **columns: Any) -> str:
    """Insert a queued job for ``spec`` as the API does, without sending its message."""
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "tenant": "local",
        "name": spec.get("name"),
        "experiment": spec.get("experiment", "default"),
        "tags": {},
        "dataset": spec["dataset"],
        "spec": spec,
        "status": "queued",
        "cancel_requested": False,
        "attempt": 0,
        "epoch": 0,
        "epochs": spec["training"]["epochs"],
        "metrics": {},
        "n_parameters": 0,
        "version": 0,
        "created_at": now,
        "updated_at": now,
        "enqueued_at": now,
        **columns,
    }
    with session_scope(settings.resolved_database_url) as session:
        session.add(Job(**values))
        session.flush()
        session.add(Transition(job_id=values["id"], status="queued", attempt=0, at=now))
    return str(values["id"])


def read_job(settings: Settings, job_id: str) -> Job:
    with session_scope(settings.resolved_database_url, write=False) as session:
        job = session.get(Job, job_id)
        assert job is not None, f"job {job_id} not found"
        return job


def update_job(settings: Settings, job_id: str, **values: Any) -> None:
    with session_scope(settings.resolved_database_url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def age_job(settings: Settings, job_id: str, seconds: float) -> None:
    """Move the job's enqueued_at and created_at ``seconds`` into the past."""
    past = utcnow() - timedelta(seconds=seconds)
    update_job(settings, job_id, enqueued_at=past, created_at=past)


def read_history(settings: Settings, job_id: str) -> list[HistoryRow]:
    with session_scope(settings.resolved_database_url, write=False) as session:
        rows = session.scalars(
            select(HistoryRow).where(HistoryRow.job_id == job_id).order_by(HistoryRow.epoch)
        )
        return list(rows)


def read_transitions(settings: Settings, job_id: str) -> list[Transition]:
    with session_scope(settings.resolved_database_url, write=False) as session:
        rows = session.scalars(
            select(Transition).where(Transition.job_id == job_id).order_by(Transition.id)
        )
        return list(rows)


def read_weights(settings: Settings, job_id: str) -> bytes | None:
    with session_scope(settings.resolved_database_url, write=False) as session:
        return session.scalar(select(Weights.data).where(Weights.job_id == job_id))


def wait_for(
    condition: Callable[[], bool], *, timeout: float = 30.0, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
