"""SIGTERM: a worker checkpoints the epoch it stops at, hands its jobs back and exits, and
another worker resumes them without training any epoch twice."""

from __future__ import annotations

import re
import signal

import pytest
from sqlalchemy import select

from services.settings import Settings
from services.store.db import session_scope
from services.store.models import Checkpoint
from services.worker.enqueue import enqueue_job
from tests.services.conftest import Configure
from tests.services.durability.checks import (
    DISTRIBUTED_ONLY,
    FAST_RECOVERY,
    assert_each_epoch_once,
    assert_weights_equal,
    claims,
    digits_spec_lasting,
    reference_weights,
    wait_for_job,
    wait_for_status,
)
from tests.services.durability.processes import Processes
from tests.services.worker.helpers import create_job, read_history, read_job, read_transitions

pytestmark = pytest.mark.slow

# No checkpoints while training: the only one is the one the shutdown takes.
NO_PERIODIC_CHECKPOINTS = {**FAST_RECOVERY, "checkpoint_interval_seconds": 600.0}


def _checkpoint_epoch(settings: Settings, job_id: str) -> int | None:
    with session_scope(settings.resolved_database_url, write=False) as session:
        return session.scalar(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id))


def test_sigterm_checkpoints_and_job_resumes(configure: Configure, processes: Processes) -> None:
    """A job handed back at SIGTERM resumes from the epoch it stopped at, to the same weights."""
    settings = configure(**NO_PERIODIC_CHECKPOINTS)
    spec = digits_spec_lasting(2.0)
    expected = reference_weights(spec)
    stopping = processes.worker("stopping")
    job_id = create_job(settings, spec)

    assert enqueue_job(job_id)
    wait_for_job(settings, job_id, processes, lambda job: job.epoch >= 5)
    epochs_before = read_job(settings, job_id).epoch
    stopping.send(signal.SIGTERM)
    exit_code = stopping.wait(30)
    released = read_job(settings, job_id)
    release = read_transitions(settings, job_id)[-1]
    checkpoint_epoch = _checkpoint_epoch(settings, job_id)
    history_at_release = [row.epoch for row in read_history(settings, job_id)]
    resuming = processes.worker("resuming")
    wait_for_status(settings, job_id, "succeeded", processes)

    assert exit_code == 0, stopping.output()
    assert (released.status, released.worker_id, released.attempt) == ("queued", None, 1)
    assert released.epoch >= epochs_before
    assert checkpoint_epoch == released.epoch
    assert history_at_release == list(range(1, released.epoch + 1))
    assert release.status == "queued"
    assert stopping.holds(release.worker_id)
    assert re.fullmatch(
        rf"worker \S+ shut down after epoch {released.epoch}; "
        "the job resumes from its checkpoint there",
        release.reason or "",
    )
    first, second = claims(settings, job_id)
    assert stopping.holds(first.worker_id)
    assert resuming.holds(second.worker_id)
    assert second.reason == f"resumed from the checkpoint at epoch {released.epoch}"
    assert_each_epoch_once(settings, job_id, spec["training"]["epochs"])
    assert_weights_equal(settings, job_id, expected)


@DISTRIBUTED_ONLY
def test_sigterm_prefork_worker_releases_every_job(
    configure: Configure, processes: Processes
) -> None:
    """Every pool process of a prefork worker hands its job back, with a checkpoint, on SIGTERM."""
    settings = configure(**NO_PERIODIC_CHECKPOINTS)
    worker = processes.worker("prefork", pool="prefork", concurrency=2)
    job_ids = [create_job(settings, digits_spec_lasting(5.0)) for _ in range(2)]

    for job_id in job_ids:
        assert enqueue_job(job_id)
    for job_id in job_ids:
        wait_for_job(settings, job_id, processes, lambda job: job.epoch >= 2)
    worker.send(signal.SIGTERM)
    exit_code = worker.wait(30)

    assert exit_code == 0, worker.output()
    for job_id in job_ids:
        job = read_job(settings, job_id)
        assert (job.status, job.worker_id) == ("queued", None)
        assert _checkpoint_epoch(settings, job_id) == job.epoch >= 2
        assert read_transitions(settings, job_id)[-1].reason is not None
