"""The queries of a running job: claim, flush, finish and release, and the reaper's sweeps.

Every write a worker makes after its claim is fenced: it matches the job row only
``WHERE id = :id AND attempt = :attempt AND status = 'running'``. A write that
matches no row means the job was taken over by a newer attempt, or finished or
cancelled by someone else, and the worker must stop without writing anything more.

``jobs.version`` goes up by one in every transaction that changes something a
client reads (status, progress, metrics, history). A lease-only renewal and
``enqueued_at`` updates leave it alone, so they do not invalidate history ETags.

Lease deadlines are compared with this process's clock, so the machines of one
deployment need clocks that agree to well within ``lease_seconds`` (NTP does this).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from services.store import counters
from services.store import jobs as job_store
from services.store.db import session_scope
from services.store.models import (
    Checkpoint,
    HistoryRow,
    Job,
    Transition,
    UTCDateTime,
    Weights,
    utcnow,
)
from services.store.upsert import dialect_insert, upsert

__all__ = [
    "Claim",
    "FlushResult",
    "Progress",
    "ReapedJob",
    "claim",
    "finish",
    "flush",
    "read_checkpoint",
    "read_status",
    "reap_expired_leases",
    "release",
    "renew_lease",
    "resend_stale_queued",
]

# How many expired leases one reaper pass handles; the next pass takes the rest.
REAP_BATCH_SIZE = 100
# The maximum wait between two messages of a job left queued, as a multiple of
# requeue_after_seconds.
RESEND_MAX_FACTOR = 16


@dataclass(frozen=True)
class Claim:
    """One attempt's hold on a job: what it trains, and the attempt number that fences it."""

    job_id: str
    attempt: int
    worker_id: str
    tenant: str
    dataset: str
    spec: dict[str, Any]
    epochs: int
    resume_epoch: int  # epochs covered by the stored checkpoint; 0 when there is none
    cancel_requested: bool
    lease_seconds: float
    database_url: str | None
    # time.monotonic() when the lease's deadline was computed: the deadline on the
    # row is lease_seconds after it, by this process's clock.
    lease_started: float


@dataclass(frozen=True)
class Progress:
    """The summary columns a worker keeps current on the job row."""

    epoch: int  # epochs completed
    metrics: Mapping[str, float]  # the latest epoch record, without its "epoch" key
    eta_seconds: float | None
    monitor: str | None
    best_epoch: int | None
    best_value: float | None


@dataclass(frozen=True)
class FlushResult:
    """Whether the fenced write matched the job, and whether a cancel or a stop was requested."""

    ok: bool
    cancel_requested: bool
    # time.monotonic() when the renewed deadline was computed; None when not ok.
    renewed_at: float | None = None
    # The stop reason another process requests (the sweeper: early_stopped), and why.
    stop_request: str | None = None
    stop_request_message: str | None = None


@dataclass(frozen=True)
class ReapedJob:
    """A running job whose lease expired, and the status the reaper gave it."""

    job_id: str
    attempt: int
    worker_id: str | None
    status: str  # queued | failed | cancelled


# Claim ------------------------------------------------------------------------


@dataclass(frozen=True)
class Deferred:
    """A queued job left queued because its tenant already runs as many jobs as it may."""

    job_id: str
    tenant: str
    running: int


def claim(
    job_id: str,
    worker_id: str,
    lease_seconds: float,
    *,
    database_url: str | None = None,
    max_running_per_tenant: int | None = None,
) -> Claim | Deferred | None:
    """Take a queued job for a new attempt, or return None if the job is not queued.

    The claim is one conditional UPDATE, so two workers that get the same message
    cannot both win. A job with a checkpoint at epoch k resumes from it: history
    rows after epoch k, written by the attempt that died, are deleted in the same
    transaction so that every epoch is recorded exactly once.

    With ``max_running_per_tenant``, a job whose tenant already has that many jobs
    running stays queued, and ``Deferred`` is returned. Its ``enqueued_at`` is set
    to now, so the reaper counts the caller's next message as sent. The count runs
    under the tenant's job lock (``job_store.lock_tenant_jobs``), so two workers
    cannot both take the tenant's last running place.
    """
    with _worker_transaction(database_url, lease_seconds) as session:
        now, lease_started = utcnow(), time.monotonic()
        if max_running_per_tenant is not None:
            deferred = _defer_over_quota(session, job_id, max_running_per_tenant, now)
            if deferred is not None:
                return deferred
        statement = _claim_statement(job_id, worker_id, lease_seconds, now)
        row = session.execute(statement, execution_options={"synchronize_session": False}).first()
        if row is None:
            return None
        resume_epoch = int(row.epoch)
        _drop_history_after(session, job_id, resume_epoch)
        reason = (
            f"resumed from the checkpoint at epoch {resume_epoch}"
            if resume_epoch
            else f"claimed by worker {worker_id}"
        )
        _add_transition(session, job_id, "running", row.attempt, worker_id, reason, now)
    return Claim(
        job_id=job_id,
        attempt=int(row.attempt),
        worker_id=worker_id,
        tenant=row.tenant,
        dataset=row.dataset,
        spec=dict(row.spec),
        epochs=int(row.epochs),
        resume_epoch=resume_epoch,
        cancel_requested=bool(row.cancel_requested),
        lease_seconds=lease_seconds,
        database_url=database_url,
        lease_started=lease_started,
    )


def _defer_over_quota(
    session: Session, job_id: str, max_running: int, now: datetime
) -> Deferred | None:
    """Return ``Deferred`` if the job's tenant runs ``max_running`` jobs, else None.

    A job that is not queued gets None too, and the claim's conditional UPDATE then
    matches nothing.
    """
    tenant = session.scalar(select(Job.tenant).where(Job.id == job_id, Job.status == "queued"))
    if tenant is None:
        return None
    job_store.lock_tenant_jobs(session, tenant)
    running = job_store.count_active_jobs(session, tenant).running
    if running < max_running:
        return None
    session.execute(
        update(Job).where(Job.id == job_id, Job.status == "queued").values(enqueued_at=now),
        execution_options={"synchronize_session": False},
    )
    return Deferred(job_id=job_id, tenant=tenant, running=running)


def _claim_statement(job_id: str, worker_id: str, lease_seconds: float, now: datetime) -> Any:
    checkpoint_epoch = select(Checkpoint.epoch).where(Checkpoint.job_id == job_id).scalar_subquery()
    return (
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="running",
            attempt=Job.attempt + 1,
            worker_id=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, _timestamp(now)),
            epoch=func.coalesce(checkpoint_epoch, 0),
            eta_seconds=None,
            version=Job.version + 1,
            updated_at=now,
        )
        .returning(
            Job.attempt,
            Job.tenant,
            Job.dataset,
            Job.spec,
            Job.epochs,
            Job.epoch,
            Job.cancel_requested,
        )
    )


def _drop_history_after(session: Session, job_id: str, epoch: int) -> None:
    """Delete history after ``epoch`` and point the job's metrics at that epoch's record."""
    deleted = session.execute(
        delete(HistoryRow)
        .where(HistoryRow.job_id == job_id, HistoryRow.epoch > epoch)
        .returning(HistoryRow.epoch)
    ).all()
    if not deleted:
        return
    values = session.scalar(
        select(HistoryRow.values).where(HistoryRow.job_id == job_id, HistoryRow.epoch == epoch)
    )
    session.execute(
        update(Job).where(Job.id == job_id).values(metrics=values or {}),
        execution_options={"synchronize_session": False},
    )


def read_checkpoint(claim: Claim) -> bytes | None:
    """Return the job's stored checkpoint bytes, or None when it has none."""
    with session_scope(claim.database_url, write=False) as session:
        return session.scalar(select(Checkpoint.data).where(Checkpoint.job_id == claim.job_id))


def read_status(claim: Claim) -> tuple[str, int] | None:
    """Return the job's ``(status, attempt)``, or None when the job no longer exists.

    A worker reads it after a write whose commit may have succeeded although the
    connection failed, to tell its own committed write from a newer attempt's.
    """
    with session_scope(claim.database_url, write=False) as session:
        row = session.execute(select(Job.status, Job.attempt).where(Job.id == claim.job_id)).first()
    return None if row is None else (str(row.status), int(row.attempt))


# Flush, finish, release -----------------------------------------------------------


def renew_lease(claim: Claim) -> FlushResult:
    """Extend the lease by ``lease_seconds`` from now and read the cancel flag; fenced."""
    return flush(claim, ())


def flush(
    claim: Claim,
    history: Sequence[Mapping[str, float]],
    progress: Progress | None = None,
    checkpoint: bytes | None = None,
    *,
    samples_per_epoch: int = 0,
) -> FlushResult:
    """Renew the lease and write buffered epochs, progress and a checkpoint in one transaction.

    ``history`` contains epoch records with their ``epoch`` key. ``checkpoint`` is a
    ``TrainingState.to_bytes()`` taken at ``progress.epoch``; it replaces the stored one.
    Without ``progress`` the write only renews the lease and reads the cancel flag and the
    stop request.

    The same transaction adds to the service counters: one lease renewal, and the epochs
    of ``history`` not stored yet, each with ``samples_per_epoch`` training samples
    (0 when the caller does not know them).
    """
    if checkpoint is not None and progress is None:
        raise ValueError("a checkpoint needs the progress it was taken at")
    with _worker_transaction(claim.database_url, claim.lease_seconds) as session:
        now, renewed_at = utcnow(), time.monotonic()
        values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=claim.lease_seconds)}
        if progress is not None:
            values.update(_progress_values(progress), version=Job.version + 1, updated_at=now)
        row = session.execute(
            update(Job)
            .where(*_fence(claim))
            .values(**values)
            .returning(Job.cancel_requested, Job.stop_request, Job.stop_request_message),
            execution_options={"synchronize_session": False},
        ).first()
        if row is None:
            return FlushResult(ok=False, cancel_requested=False)
        new_epochs = _insert_history(session, claim, history)
        if checkpoint is not None:
            assert progress is not None
            _store_checkpoint(session, claim, progress.epoch, checkpoint, now)
        _count_work(session, claim, new_epochs, samples_per_epoch, lease_renewals=1)
    return FlushResult(
        ok=True,
        cancel_requested=bool(row.cancel_requested),
        renewed_at=renewed_at,
        stop_request=row.stop_request,
        stop_request_message=row.stop_request_message,
    )


def finish(
    claim: Claim,
    *,
    status: str,
    stop_reason: str,
    stop_message: str | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    history: Sequence[Mapping[str, float]] = (),
    progress: Progress | None = None,
    weights: bytes | None = None,
    samples_per_epoch: int = 0,
) -> bool:
    """Write the last epochs, the weights and the final status in one transaction.

    The stored checkpoint is deleted, because a finished job is never resumed. A failed
    job keeps it: it is the state before the failure, which a client may still download
    (``?checkpoint=latest``) until the job is deleted.
    Returns False, writing nothing, when the attempt no longer owns the job.
    The new epochs are counted as in ``flush``.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "stop_reason": stop_reason,
        "stop_message": stop_message,
        "error_type": error_type,
        "error_message": error_message,
        "lease_expires_at": None,
        "finished_at": now,
        "version": Job.version + 1,
        "updated_at": now,
    }
    if progress is not None:
        values.update(_progress_values(progress))

    with _worker_transaction(claim.database_url, claim.lease_seconds) as session:
        row = session.execute(
            update(Job).where(*_fence(claim)).values(**values).returning(Job.id),
            execution_options={"synchronize_session": False},
        ).first()
        if row is None:
            return False
        new_epochs = _insert_history(session, claim, history)
        if weights is not None:
            _upsert(
                session,
                Weights,
                {"job_id": claim.job_id, "data": weights, "created_at": now},
                key="job_id",
            )
        if status != "failed":
            session.execute(delete(Checkpoint).where(Checkpoint.job_id == claim.job_id))
        reason = stop_message or error_message or stop_reason
        _add_transition(session, claim.job_id, status, claim.attempt, claim.worker_id, reason, now)
        _count_work(session, claim, new_epochs, samples_per_epoch)
    return True


def release(
    claim: Claim,
    reason: str,
    *,
    history: Sequence[Mapping[str, float]] = (),
    progress: Progress | None = None,
    checkpoint: bytes | None = None,
    samples_per_epoch: int = 0,
) -> bool:
    """Put a running job back in the queue (a worker shutting down); False if not owned.

    ``history``, ``progress`` and ``checkpoint`` are written in the same transaction,
    and the new epochs counted, as in ``flush``. The next attempt resumes from the
    stored checkpoint. The caller sends the new message after this returns, because
    the row must be committed first.
    """
    if checkpoint is not None and progress is None:
        raise ValueError("a checkpoint needs the progress it was taken at")
    now = utcnow()
    values: dict[str, Any] = {
        "status": "queued",
        "worker_id": None,
        "lease_expires_at": None,
        "enqueued_at": now,
        "version": Job.version + 1,
        "updated_at": now,
    }
    if progress is not None:
        values.update(_progress_values(progress))
    values["eta_seconds"] = None

    with _worker_transaction(claim.database_url, claim.lease_seconds) as session:
        row = session.execute(
            update(Job).where(*_fence(claim)).values(**values).returning(Job.id),
            execution_options={"synchronize_session": False},
        ).first()
        if row is None:
            return False
        new_epochs = _insert_history(session, claim, history)
        if checkpoint is not None:
            assert progress is not None
            _store_checkpoint(session, claim, progress.epoch, checkpoint, now)
        _add_transition(
            session, claim.job_id, "queued", claim.attempt, claim.worker_id, reason, now
        )
        _count_work(session, claim, new_epochs, samples_per_epoch)
    return True


# The reaper's sweeps ------------------------------------------------------------------


def reap_expired_leases(max_attempts: int, *, database_url: str | None = None) -> list[ReapedJob]:
    """Return running jobs whose lease expired to the queue, or fail them as worker_lost.

    A job goes back to ``queued``, with ``enqueued_at`` set, and the caller sends its
    message. Once its ``attempt`` has reached ``max_attempts``, it fails with
    stop_reason ``worker_lost`` instead. A job whose cancel was requested ends ``cancelled``.
    The same transaction adds each reaped job to the jobs-reaped counter of its new status.
    """
    now = utcnow()
    reaped: list[ReapedJob] = []
    with session_scope(database_url, write=True) as session:
        # SKIP LOCKED (PostgreSQL; SQLite has no row locks): a row that a stalled
        # transaction holds is left for a later pass instead of blocking this one.
        expired = session.execute(
            select(Job.id, Job.attempt, Job.worker_id, Job.cancel_requested)
            .where(Job.status == "running", Job.lease_expires_at < now)
            .order_by(Job.lease_expires_at)
            .limit(REAP_BATCH_SIZE)
            .with_for_update(skip_locked=True)
        ).all()
        for job in expired:
            status, values = _reaped_values(
                job.attempt, max_attempts, job.worker_id, job.cancel_requested, now
            )
            values.update(
                lease_expires_at=None, worker_id=None, version=Job.version + 1, updated_at=now
            )
            matched = session.execute(
                update(Job)
                .where(
                    Job.id == job.id,
                    Job.attempt == job.attempt,
                    Job.status == "running",
                    Job.lease_expires_at < now,
                )
                .values(**values)
                .returning(Job.id),
                execution_options={"synchronize_session": False},
            ).first()
            if matched is None:
                continue  # renewed or finished since the SELECT, or another reaper took it
            reason = values.get("stop_message") or f"lease expired on worker {job.worker_id}"
            _add_transition(session, job.id, status, job.attempt, job.worker_id, reason, now)
            reaped.append(ReapedJob(job.id, job.attempt, job.worker_id, status))
        reaped_by_status: dict[str, int] = {}
        for reaped_job in reaped:
            name = counters.jobs_reaped(reaped_job.status)
            reaped_by_status[name] = reaped_by_status.get(name, 0) + 1
        counters.add_counts(session, reaped_by_status)
    return reaped


def _reaped_values(
    attempt: int, max_attempts: int, worker_id: str | None, cancel_requested: bool, now: datetime
) -> tuple[str, dict[str, Any]]:
    """Return the new status of an expired job and the columns that go with it."""
    if cancel_requested:
        message = f"cancelled by request; worker {worker_id} stopped before it saw the request"
        return "cancelled", {
            "status": "cancelled",
            "stop_reason": "cancelled",
            "stop_message": message,
            "finished_at": now,
        }
    if attempt >= max_attempts:
        message = (
            f"lease expired on worker {worker_id}; the job was lost by {attempt} attempts "
            f"and max_attempts is {max_attempts}"
        )
        return "failed", {
            "status": "failed",
            "stop_reason": "worker_lost",
            "stop_message": message,
            "finished_at": now,
        }
    return "queued", {"status": "queued", "enqueued_at": now, "eta_seconds": None}


def resend_stale_queued(
    requeue_after_seconds: float, *, database_url: str | None = None
) -> list[str]:
    """Mark queued jobs whose message is due again as sent now; return their ids.

    The caller sends each returned job's message again, since the last one may be
    lost. A job is due ``requeue_after_seconds`` after it became queued, and then
    after twice as long as it had waited before its last message, but at most
    ``RESEND_MAX_FACTOR`` times ``requeue_after_seconds``. So a job that waits
    behind a long backlog gets a few extra messages, not one per interval.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=requeue_after_seconds)
    queued_since = (
        select(func.max(Transition.at))
        .where(Transition.job_id == Job.id, Transition.status == "queued")
        .correlate(Job)
        .scalar_subquery()
    )
    sent_at = func.coalesce(Job.enqueued_at, Job.created_at, type_=UTCDateTime())
    candidates = (
        select(
            Job.id,
            sent_at.label("sent_at"),
            func.coalesce(queued_since, Job.created_at, type_=UTCDateTime()).label("queued_at"),
        )
        .where(Job.status == "queued", sent_at < _timestamp(cutoff))
        .with_for_update(skip_locked=True, of=Job)
    )
    with session_scope(database_url, write=True) as session:
        due = [
            row.id
            for row in session.execute(candidates)
            if _resend_due(row.sent_at, row.queued_at, now, requeue_after_seconds)
        ]
        if due:
            session.execute(
                update(Job).where(Job.id.in_(due), Job.status == "queued").values(enqueued_at=now),
                execution_options={"synchronize_session": False},
            )
    return due


def _resend_due(
    sent_at: datetime, queued_at: datetime, now: datetime, requeue_after_seconds: float
) -> bool:
    waited_before_sending = (sent_at - queued_at).total_seconds()
    interval = min(
        max(requeue_after_seconds, 2 * waited_before_sending),
        RESEND_MAX_FACTOR * requeue_after_seconds,
    )
    return (now - sent_at).total_seconds() >= interval


# Helpers -------------------------------------------------------------------------------


@contextmanager
def _worker_transaction(database_url: str | None, lease_seconds: float) -> Iterator[Session]:
    """Open a worker's write transaction, which the server ends if the worker stalls in it.

    A worker paused inside a transaction (SIGSTOP, a frozen VM) would keep the job
    row locked, and the reaper, the next claim and cancels would wait for it. So
    PostgreSQL ends a session that stays idle in this transaction for
    ``lease_seconds``, by when the lease has run out anyway.

    The session is connected (on SQLite: holds the write lock) when the block
    starts, so a caller that reads the clock there for a lease deadline does not
    lose the time spent connecting or waiting for the lock.

    NOTE: SQLite has no such timeout. A worker paused inside a write transaction
    blocks every writer of an embedded deployment until it continues or dies. The
    others wait up to the busy timeout and then fail with "database is locked".

    NOTE: PostgreSQL starts this timeout when it waits for a new request, so it
    probably does not cover a worker paused in the middle of sending one (a weights
    blob larger than the socket buffer, for example). That case is untested.
    """
    with session_scope(database_url, write=True) as session:
        if session.get_bind().dialect.name == "postgresql":
            timeout = f"{max(int(lease_seconds * 1000), 1)}ms"
            session.execute(
                select(func.set_config("idle_in_transaction_session_timeout", timeout, True))
            )
        session.connection()
        yield session


def _fence(claim: Claim) -> tuple[Any, ...]:
    return (Job.id == claim.job_id, Job.attempt == claim.attempt, Job.status == "running")


def _timestamp(value: datetime) -> Any:
    """Bind ``value`` with the UTC column type, for timestamps inside SQL expressions."""
    return bindparam(None, value, type_=UTCDateTime())


def _progress_values(progress: Progress) -> dict[str, Any]:
    return {
        "epoch": progress.epoch,
        "metrics": _json_record(progress.metrics),
        "eta_seconds": _finite_or_none(progress.eta_seconds),
        "monitor": progress.monitor,
        "best_epoch": progress.best_epoch,
        "best_value": _finite_or_none(progress.best_value),
    }


def _insert_history(session: Session, claim: Claim, history: Iterable[Mapping[str, float]]) -> int:
    """Insert epoch records, overwriting rows of the same epochs; return how many were new.

    Only a fenced transaction calls this, and the claim deleted every row after the
    checkpoint, so an existing row can only come from this attempt's own earlier
    commit: one whose acknowledgement was lost, so that the worker sent it again.
    Overwriting makes that retry succeed instead of failing on the primary key, and
    leaving such rows out of the count keeps the retry from counting its epochs twice.
    """
    rows = [
        {
            "job_id": claim.job_id,
            "epoch": int(record["epoch"]),
            "attempt": claim.attempt,
            "values": _json_record({k: v for k, v in record.items() if k != "epoch"}),
        }
        for record in history
    ]
    if not rows:
        return 0
    epochs = {row["epoch"] for row in rows}
    stored = session.scalars(
        select(HistoryRow.epoch).where(
            HistoryRow.job_id == claim.job_id, HistoryRow.epoch.in_(epochs)
        )
    ).all()
    upsert(
        session,
        HistoryRow,
        rows,
        index_elements=["job_id", "epoch"],
        set_=lambda excluded: {"attempt": excluded.attempt, "values": excluded["values"]},
    )
    return len(epochs - set(stored))


def _count_work(
    session: Session,
    claim: Claim,
    new_epochs: int,
    samples_per_epoch: int,
    *,
    lease_renewals: int = 0,
) -> None:
    """Add an attempt's newly stored epochs, their samples and its renewals to the counters."""
    counts = {
        counters.EPOCHS_TRAINED: new_epochs,
        counters.SAMPLES_TRAINED: new_epochs * samples_per_epoch,
        counters.LEASE_RENEWALS: lease_renewals,
    }
    counters.add_counts(session, counts, source=claim.worker_id)


def _store_checkpoint(
    session: Session, claim: Claim, epoch: int, checkpoint: bytes, now: datetime
) -> None:
    values = {
        "job_id": claim.job_id,
        "epoch": epoch,
        "attempt": claim.attempt,
        "data": checkpoint,
        "created_at": now,
    }
    _upsert(session, Checkpoint, values, key="job_id")


def _add_transition(
    session: Session,
    job_id: str,
    status: str,
    attempt: int,
    worker_id: str | None,
    reason: str | None,
    at: datetime,
) -> None:
    session.add(
        Transition(
            job_id=job_id,
            status=status,
            attempt=attempt,
            worker_id=worker_id,
            reason=reason,
            at=at,
        )
    )


def _upsert(session: Session, model: type[Any], values: dict[str, Any], *, key: str) -> None:
    """Insert a row, or overwrite the row with the same ``key`` (SQLite and PostgreSQL)."""
    statement = dialect_insert(session, model).values(**values)
    changed = {name: statement.excluded[name] for name in values if name != key}
    session.execute(statement.on_conflict_do_update(index_elements=[key], set_=changed))


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _json_record(record: Mapping[str, Any]) -> dict[str, float | None]:
    """Convert a record for a JSON column: plain floats, with NaN and infinities as null.

    PostgreSQL's JSONB rejects NaN, and JSON has no literal for it.
    """
    return {str(name): _finite_or_none(float(value)) for name, value in record.items()}
