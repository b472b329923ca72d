"""A worker paused past its lease (SIGSTOP) loses the job to another worker, and once it
continues (SIGCONT) it writes nothing more. A transaction it left open blocks no other writer."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from services.settings import Settings
from services.store import runs
from services.store.db import session_scope
from services.store.models import Job, utcnow
from services.worker.enqueue import enqueue_job
from services.worker.reaper import reap_once
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
from tests.services.worker.helpers import (
    TEA_SPEC,
    create_job,
    read_history,
    read_job,
    update_job,
    wait_for,
)

pytestmark = DISTRIBUTED_ONLY


@pytest.mark.slow
def test_paused_worker_fenced_out(configure: Configure, processes: Processes) -> None:
    """SIGSTOP past the lease: another worker takes over; after SIGCONT the first one stops."""
    settings = configure(**FAST_RECOVERY)
    spec = digits_spec_lasting(0.5)
    expected = reference_weights(spec)
    processes.worker("worker-a")
    processes.worker("worker-b")
    processes.reaper()
    job_id = create_job(settings, spec)

    assert enqueue_job(job_id)
    wait_for_job(settings, job_id, processes, lambda job: job.epoch >= 5)
    paused = processes.holder(job_id)
    paused.send(signal.SIGSTOP)
    wait_for_job(settings, job_id, processes, lambda job: job.attempt == 2 and job.epoch > 0)
    taken_over = read_job(settings, job_id)
    paused.send(signal.SIGCONT)
    wait_for_status(settings, job_id, "succeeded", processes)
    wait_for(lambda: "no longer owns the job" in paused.output(), timeout=30)

    assert taken_over.status == "running"
    assert not paused.holds(taken_over.worker_id)
    assert paused.is_running(), paused.output()
    first, second = claims(settings, job_id)
    assert paused.holds(first.worker_id)
    assert not paused.holds(second.worker_id)
    assert_each_epoch_once(settings, job_id, spec["training"]["epochs"])
    resumed_at = int((second.reason or "").rsplit(" ", 1)[-1])
    attempts = [row.attempt for row in read_history(settings, job_id)]
    assert attempts == [1] * resumed_at + [2] * (spec["training"]["epochs"] - resumed_at)
    assert_weights_equal(settings, job_id, expected)
    assert read_job(settings, job_id).attempt == 2


def _expired_claim(settings: Settings, job_id: str, lease_seconds: float) -> runs.Claim:
    claim = runs.claim(
        job_id, "stalled-worker", lease_seconds, database_url=settings.resolved_database_url
    )
    assert claim is not None
    update_job(settings, job_id, lease_expires_at=utcnow())
    return claim


def test_reaper_skips_row_of_stalled_transaction(settings: Settings) -> None:
    """A job row locked by an open transaction does not block the reaper's other jobs."""
    stalled_id = create_job(settings, TEA_SPEC)
    other_id = create_job(settings, TEA_SPEC)
    _expired_claim(settings, stalled_id, 10.0)
    _expired_claim(settings, other_id, 10.0)
    sent: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def hold_row_lock() -> None:
        with session_scope(settings.resolved_database_url) as session:
            session.execute(select(Job.id).where(Job.id == stalled_id).with_for_update())
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_row_lock)
    holder.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        first = reap_once(settings, enqueue=lambda job_id: sent.append(job_id) or True)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join(10)
    second = reap_once(settings, enqueue=lambda job_id: sent.append(job_id) or True)

    assert first.requeued == [other_id]
    assert elapsed < 5.0
    assert second.requeued == [stalled_id]
    assert sent == [other_id, stalled_id]


def test_server_ends_stalled_worker_transaction(settings: Settings) -> None:
    """PostgreSQL ends a worker's transaction left idle for lease_seconds, freeing the row."""
    job_id = create_job(settings, TEA_SPEC)
    claim = _expired_claim(settings, job_id, 0.5)

    with (
        pytest.raises(DBAPIError),
        runs._worker_transaction(claim.database_url, claim.lease_seconds) as session,
    ):
        session.execute(update(Job).where(Job.id == job_id).values(epoch=1))
        time.sleep(1.5)  # paused with the row locked
        session.execute(text("SELECT 1"))
    with session_scope(settings.resolved_database_url) as session:
        session.execute(text("SET LOCAL lock_timeout = '2s'"))
        session.execute(update(Job).where(Job.id == job_id).values(epoch=2))

    assert read_job(settings, job_id).epoch == 2


def _write_history(session: Any, claim: runs.Claim) -> None:
    records = [{"epoch": epoch, "train_loss": 1.0 / epoch} for epoch in range(1, 301)]
    runs._insert_history(session, claim, records)


def _write_counters(session: Any, claim: runs.Claim) -> None:
    runs._count_work(session, claim, new_epochs=3, samples_per_epoch=10, lease_renewals=1)


@pytest.mark.parametrize("write", [_write_history, _write_counters], ids=["history", "counters"])
def test_multirow_write_keeps_idle_timeout(
    settings: Settings, write: Callable[[Any, runs.Claim], None]
) -> None:
    """A transaction left idle right after a write of several rows is ended too."""
    job_id = create_job(settings, TEA_SPEC)
    claim = _expired_claim(settings, job_id, 0.5)

    with (
        pytest.raises(DBAPIError),
        runs._worker_transaction(claim.database_url, claim.lease_seconds) as session,
    ):
        write(session, claim)
        time.sleep(1.5)  # paused with the rows locked
        session.execute(text("SELECT 1"))

    assert read_history(settings, job_id) == []
