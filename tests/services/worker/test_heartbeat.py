"""The heartbeat thread and what the runner does with it: leases renewed inside long batches,
rejected renewals, unreachable databases, and a shutdown that cannot wait for the epoch end."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from sqlalchemy import select

import core
from core.paramfile import load_model
from services.settings import Settings
from services.store import runs
from services.store.db import session_scope
from services.store.models import Checkpoint
from services.worker.heartbeat import Heartbeat
from services.worker.runner import run_job
from tests.services.conftest import Configure
from tests.services.worker.helpers import (
    DIGITS_SPEC,
    create_job,
    read_job,
    read_transitions,
    read_weights,
    update_job,
    wait_for,
)

# A PostgreSQL URL on a port where nothing listens.
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/steep"


class _SlowFirstBatch:
    """A shutdown flag that is never set, but whose first check blocks like a long batch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.checks = 0

    def is_set(self) -> bool:
        self.checks += 1
        if self.checks == 1:
            time.sleep(self.seconds)
        return False


class _ShutdownAfter:
    """A shutdown flag that reports set after ``n_checks`` batches."""

    def __init__(self, n_checks: int) -> None:
        self.remaining = n_checks

    def is_set(self) -> bool:
        self.remaining -= 1
        return self.remaining < 0


def _claim(settings: Settings, lease_seconds: float) -> runs.Claim:
    job_id = create_job(settings, DIGITS_SPEC)
    claim = runs.claim(
        job_id, "test-worker", lease_seconds, database_url=settings.resolved_database_url
    )
    assert claim is not None
    return claim


def _short_digits(epochs: int) -> dict[str, object]:
    return {**DIGITS_SPEC, "training": {**DIGITS_SPEC["training"], "epochs": epochs}}


def test_heartbeat_renews_without_batches(settings: Settings) -> None:
    """The lease keeps moving forward while the training thread does not call back at all."""
    claim = _claim(settings, lease_seconds=0.6)
    first_deadline = read_job(settings, claim.job_id).lease_expires_at
    heartbeat = Heartbeat(claim, interval=0.1)

    heartbeat.start()
    try:
        time.sleep(1.5)
        lost = heartbeat.is_lost()
    finally:
        heartbeat.stop()

    assert not lost
    renewed_deadline = read_job(settings, claim.job_id).lease_expires_at
    assert first_deadline is not None and renewed_deadline is not None
    assert (renewed_deadline - first_deadline).total_seconds() > 1.0


def test_heartbeat_rejected_when_attempt_changes(settings: Settings) -> None:
    """A renewal fenced out by a newer attempt reports the lease lost."""
    claim = _claim(settings, lease_seconds=10.0)
    heartbeat = Heartbeat(claim, interval=0.05)

    heartbeat.start()
    try:
        update_job(settings, claim.job_id, attempt=claim.attempt + 1)
        wait_for(heartbeat.is_lost, timeout=5)
    finally:
        heartbeat.stop()

    assert heartbeat.lost_reason is not None
    assert "another attempt owns the job" in heartbeat.lost_reason


def test_heartbeat_lost_when_database_unreachable(settings: Settings) -> None:
    """Renewals that keep failing report the lease lost once it may have expired, not before."""
    claim = dataclasses.replace(
        _claim(settings, lease_seconds=1.0), database_url=UNREACHABLE_DATABASE
    )
    heartbeat = Heartbeat(claim, interval=0.1)

    heartbeat.start()
    try:
        time.sleep(0.5)
        lost_early = heartbeat.is_lost()
        wait_for(heartbeat.is_lost, timeout=5)
    finally:
        heartbeat.stop()

    assert not lost_early
    assert heartbeat.lost_reason is not None
    assert "could not be renewed" in heartbeat.lost_reason


def test_batch_longer_than_lease_keeps_job(configure: Configure) -> None:
    """A batch that outlasts the lease does not lose the job: the heartbeat renews it."""
    settings = configure(lease_seconds=0.6)
    job_id = create_job(settings, _short_digits(3))

    outcome = run_job(
        job_id, worker_id="test-worker", settings=settings, shutdown=_SlowFirstBatch(2.0)
    )

    assert outcome == "succeeded"
    assert read_job(settings, job_id).attempt == 1


def test_shutdown_past_wait_resumes_from_stored_checkpoint(configure: Configure) -> None:
    """With no time to end the epoch, the job goes back without a new checkpoint, and the
    next attempt retrains from the last stored one to the same weights."""
    settings = configure(shutdown_wait_seconds=0.0, checkpoint_interval_seconds=600.0)
    spec = _short_digits(6)
    job_id = create_job(settings, spec)

    first = run_job(job_id, worker_id="first", settings=settings, shutdown=_ShutdownAfter(100))
    with session_scope(settings.resolved_database_url, write=False) as session:
        checkpoint = session.scalar(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id))
    release = read_transitions(settings, job_id)[-1]
    second = run_job(job_id, worker_id="second", settings=settings)

    assert first == "released"
    assert checkpoint is None
    assert release.reason == "worker first shut down; the job resumes from its last checkpoint"
    assert second == "succeeded"
    assert read_transitions(settings, job_id)[-2].reason == "claimed by worker second"
    data = core.load_builtin("digits")
    expected = core.fit(spec, data.x, data.y, classes=data.classes).params
    stored_bytes = read_weights(settings, job_id)
    assert stored_bytes is not None
    stored = load_model(stored_bytes).parameters()
    for name, value in expected.items():
        np.testing.assert_array_equal(stored[name], value, err_msg=name)
