"""Queries on sweeps, their trials, and the trial jobs' history.

A sweep's trial becomes a job row (``jobs.sweep_id`` set) only when the sweeper
starts it. Every function that starts trials or ends a sweep runs with the sweep
row locked (``lock_running_sweep``), so two sweepers never start more than
``max_parallel`` trials.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from services.store.models import HistoryRow, Job, Sweep, SweepTrial, utcnow

__all__ = [
    "ACTIVE_STATUSES",
    "TrialRow",
    "count_active_trials",
    "count_trials_by_status",
    "decode_cursor",
    "encode_cursor",
    "finish_sweep",
    "get_sweep",
    "get_sweep_by_idempotency_key",
    "insert_sweep",
    "list_running_sweep_ids",
    "list_sweeps",
    "list_trials",
    "lock_running_sweep",
    "mark_checked",
    "pending_trials",
    "read_objective_curves",
    "request_stop",
]

ACTIVE_STATUSES = ("queued", "running")


@dataclass(frozen=True)
class TrialRow:
    """A trial and the summary columns of its job; the job fields are None before it starts."""

    index: int
    parameters: dict[str, Any]
    job_id: str | None
    checked_epoch: int
    status: str | None  # the job's status; None if it has not started or was deleted
    stop_reason: str | None
    stop_message: str | None
    stop_request: str | None
    epoch: int
    epochs: int | None
    metrics: dict[str, Any]
    monitor: str | None
    monitor_mode: str | None  # the trial spec's early_stopping.mode, when not auto
    best_epoch: int | None
    best_value: float | None


# Reading ---------------------------------------------------------------------------


def get_sweep(session: Session, tenant: str, sweep_id: str) -> Sweep | None:
    return session.scalar(select(Sweep).where(Sweep.tenant == tenant, Sweep.id == sweep_id))


def get_sweep_by_idempotency_key(session: Session, tenant: str, key: str) -> Sweep | None:
    return session.scalar(select(Sweep).where(Sweep.tenant == tenant, Sweep.idempotency_key == key))


def list_trials(session: Session, sweep_id: str) -> list[TrialRow]:
    """Return the sweep's trials in index order, each with its job's summary columns."""
    rows = session.execute(
        select(
            SweepTrial.index.label("trial_index"),
            SweepTrial.parameters,
            SweepTrial.job_id,
            SweepTrial.checked_epoch,
            Job.status,
            Job.stop_reason,
            Job.stop_message,
            Job.stop_request,
            Job.epoch,
            Job.epochs,
            Job.metrics,
            Job.monitor,
            SweepTrial.spec["training"]["early_stopping"]["mode"].as_string().label("mode"),
            Job.best_epoch,
            Job.best_value,
        )
        .outerjoin(Job, Job.id == SweepTrial.job_id)
        .where(SweepTrial.sweep_id == sweep_id)
        .order_by(SweepTrial.index)
    )
    return [
        TrialRow(
            index=row.trial_index,
            parameters=dict(row.parameters),
            job_id=row.job_id,
            checked_epoch=row.checked_epoch,
            status=row.status,
            stop_reason=row.stop_reason,
            stop_message=row.stop_message,
            stop_request=row.stop_request,
            epoch=row.epoch or 0,
            epochs=row.epochs,
            metrics=dict(row.metrics or {}),
            monitor=row.monitor,
            monitor_mode=row.mode if row.mode in ("min", "max") else None,
            best_epoch=row.best_epoch,
            best_value=row.best_value,
        )
        for row in rows
    ]


def count_trials_by_status(session: Session, sweep_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Count each sweep's trials by their job's status: ``{sweep_id: {status: n}}``.

    A trial without a job is counted as ``pending``, and one whose job was deleted as
    ``deleted``.
    """
    if not sweep_ids:
        return {}
    status = case(
        (Job.status.is_not(None), Job.status),
        (SweepTrial.job_id.is_(None), "pending"),
        else_="deleted",
    ).label("status")
    rows = session.execute(
        select(SweepTrial.sweep_id, status, func.count())
        .outerjoin(Job, Job.id == SweepTrial.job_id)
        .where(SweepTrial.sweep_id.in_(sweep_ids))
        .group_by(SweepTrial.sweep_id, status)
    )
    counts: dict[str, dict[str, int]] = {sweep_id: {} for sweep_id in sweep_ids}
    for sweep_id, trial_status, count in rows:
        counts[sweep_id][trial_status] = int(count)
    return counts


def read_objective_curves(
    session: Session, job_ids: Sequence[str], metric: str, max_epoch: int
) -> dict[str, list[float | None]]:
    """Read ``metric`` at epochs 1 to ``max_epoch`` of each job: ``{job_id: [value, ...]}``.

    Entry ``i`` of a list is epoch ``i + 1``; a list ends at the job's last recorded
    epoch, and an epoch without a finite value is None.
    """
    if not job_ids:
        return {}
    value = HistoryRow.values[metric].as_float()
    rows = session.execute(
        select(HistoryRow.job_id, HistoryRow.epoch, value)
        .where(HistoryRow.job_id.in_(job_ids), HistoryRow.epoch <= max_epoch)
        .order_by(HistoryRow.job_id, HistoryRow.epoch)
    )
    curves: dict[str, list[float | None]] = {job_id: [] for job_id in job_ids}
    for job_id, epoch, number in rows:
        curve = curves[job_id]
        curve.extend([None] * (epoch - 1 - len(curve)))
        curve.append(float(number) if number is not None else None)
    return curves


# Listing with keyset pagination ------------------------------------------------------


def list_sweeps(
    session: Session,
    tenant: str,
    *,
    statuses: Sequence[str],
    experiment: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[Sweep]:
    """Return one page of the tenant's sweeps, newest first, ties broken by id."""
    statement = select(Sweep).where(Sweep.tenant == tenant)
    if statuses:
        statement = statement.where(Sweep.status.in_(statuses))
    if experiment is not None:
        statement = statement.where(Sweep.experiment == experiment)
    if after is not None:
        created_at, sweep_id = after
        statement = statement.where(
            or_(
                Sweep.created_at < created_at,
                and_(Sweep.created_at == created_at, Sweep.id < sweep_id),
            )
        )
    statement = statement.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit)
    return list(session.scalars(statement))


def encode_cursor(sweep: Sweep) -> str:
    """Encode an opaque cursor that points just after ``sweep`` in the list order."""
    payload = {"created_at": sweep.created_at.isoformat(), "id": sweep.id}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Return (created_at, id) from a cursor made by ``encode_cursor``.

    Raises:
        ValueError: the cursor is malformed.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        return datetime.fromisoformat(payload["created_at"]), str(payload["id"])
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise ValueError("it is not a cursor returned by this API") from error


# Writing ---------------------------------------------------------------------------


def insert_sweep(session: Session, sweep: Sweep, trials: Sequence[SweepTrial]) -> None:
    """Add a new sweep and its trials; the caller commits."""
    session.add(sweep)
    session.flush()  # the trials' foreign key needs the sweep row first
    session.add_all(trials)
    session.flush()


def list_running_sweep_ids(session: Session) -> list[str]:
    """Return the ids of every tenant's running sweeps, oldest first."""
    return list(
        session.scalars(
            select(Sweep.id).where(Sweep.status == "running").order_by(Sweep.created_at)
        )
    )


def lock_running_sweep(session: Session, sweep_id: str) -> Sweep | None:
    """Return the sweep if it is running, locked until the transaction ends.

    PostgreSQL locks the row (SELECT ... FOR UPDATE). SQLite has no row locks, and a
    write session (``session_scope(write=True)``) holds the database's single write
    lock from its BEGIN IMMEDIATE instead.
    """
    return session.scalar(
        select(Sweep).where(Sweep.id == sweep_id, Sweep.status == "running").with_for_update()
    )


def count_active_trials(session: Session, sweep_id: str) -> int:
    """Count the sweep's jobs that are queued or running."""
    count = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.sweep_id == sweep_id, Job.status.in_(ACTIVE_STATUSES))
    )
    return int(count or 0)


def pending_trials(session: Session, sweep_id: str, limit: int) -> list[SweepTrial]:
    """Return up to ``limit`` trials without a job, in index order."""
    return list(
        session.scalars(
            select(SweepTrial)
            .where(SweepTrial.sweep_id == sweep_id, SweepTrial.job_id.is_(None))
            .order_by(SweepTrial.index)
            .limit(limit)
        )
    )


def finish_sweep(
    session: Session, sweep_id: str, status: str, stop_message: str | None = None
) -> bool:
    """End a running sweep with ``status``; False if it was no longer running."""
    now = utcnow()
    result = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status == "running")
        .values(status=status, stop_message=stop_message, finished_at=now, updated_at=now)
        .returning(Sweep.id),
        execution_options={"synchronize_session": False},
    )
    return result.scalar() is not None


def request_stop(session: Session, job_id: str, reason: str, message: str) -> bool:
    """Ask the worker of a running job to end it with ``reason``; False if not running.

    A job that already has a stop request keeps the first one.
    """
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.stop_request.is_(None))
        .values(
            stop_request=reason,
            stop_request_message=message,
            updated_at=utcnow(),
            version=Job.version + 1,
        )
        .returning(Job.id),
        execution_options={"synchronize_session": False},
    )
    return result.scalar() is not None


def mark_checked(session: Session, sweep_id: str, index: int, epoch: int) -> None:
    """Record that the early-stopping rule judged trial ``index`` at ``epoch``."""
    session.execute(
        update(SweepTrial)
        .where(SweepTrial.sweep_id == sweep_id, SweepTrial.index == index)
        .values(checked_epoch=epoch),
        execution_options={"synchronize_session": False},
    )
