"""The ``workers`` table: each worker process reports itself, and readers tell which are alive.

A worker process upserts its row when it starts, every ``HEARTBEAT_SECONDS``
while it runs (idle or training), and once more, with ``stopped_at``, when it
stops cleanly. A row is alive while it is not stopped and ``last_seen_at`` is
within ``ALIVE_SECONDS`` of the reader's clock, so a killed worker drops out on
its own. Like leases, this needs the machines' clocks to agree to within a few
seconds.

The reaper deletes rows that stopped, or went silent, more than
``PRUNE_AFTER_SECONDS`` ago, and folds their counter rows into the shared ones
(see ``services.store.counters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from services.store import counters
from services.store.db import session_scope
from services.store.models import WorkerRow, utcnow
from services.store.upsert import dialect_insert

__all__ = [
    "ALIVE_SECONDS",
    "HEARTBEAT_SECONDS",
    "PRUNE_AFTER_SECONDS",
    "WorkerIdentity",
    "alive_workers",
    "count_alive_workers",
    "mark_stopped",
    "prune_workers",
    "report_alive",
]

# How often a worker process refreshes last_seen_at.
# TODO: make this a setting (worker_heartbeat_seconds) once the settings class has one.
HEARTBEAT_SECONDS = 5.0
# A worker not seen for this long is no longer counted as alive: three missed refreshes.
ALIVE_SECONDS = 3 * HEARTBEAT_SECONDS
# Stopped or silent rows older than this are deleted by the reaper.
PRUNE_AFTER_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class WorkerIdentity:
    """A worker process's identity: its id (the ``worker_id`` its claims carry), host and pid."""

    id: str
    hostname: str
    pid: int


def report_alive(
    identity: WorkerIdentity,
    job_id: str | None,
    *,
    starting: bool = False,
    database_url: str | None = None,
) -> None:
    """Upsert the worker's row with ``last_seen_at`` now and the job it trains.

    ``starting`` also resets ``started_at`` and ``stopped_at``, for a process that
    reuses the id of an earlier one. Otherwise a missing row (pruned, or the
    database was reset) is created again.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "id": identity.id,
        "hostname": identity.hostname,
        "pid": identity.pid,
        "started_at": now,
        "last_seen_at": now,
        "job_id": job_id,
        "stopped_at": None,
    }
    with session_scope(database_url, write=True) as session:
        statement = dialect_insert(session, WorkerRow).values(**values)
        changed = ["last_seen_at", "job_id"]
        if starting:
            changed += ["hostname", "pid", "started_at", "stopped_at"]
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["id"], set_={name: statement.excluded[name] for name in changed}
            )
        )


def mark_stopped(worker_id: str, *, database_url: str | None = None) -> None:
    """Record that the worker stopped cleanly: ``stopped_at`` now, and no job."""
    now = utcnow()
    with session_scope(database_url, write=True) as session:
        session.execute(
            update(WorkerRow)
            .where(WorkerRow.id == worker_id)
            .values(stopped_at=now, last_seen_at=now, job_id=None),
            execution_options={"synchronize_session": False},
        )


def _alive_condition(now: datetime) -> tuple[Any, ...]:
    return (
        WorkerRow.stopped_at.is_(None),
        WorkerRow.last_seen_at >= now - timedelta(seconds=ALIVE_SECONDS),
    )


def alive_workers(session: Session) -> list[WorkerRow]:
    """Return the workers alive now, by id."""
    rows = session.scalars(
        select(WorkerRow).where(*_alive_condition(utcnow())).order_by(WorkerRow.id)
    )
    return list(rows)


def count_alive_workers(session: Session) -> int:
    """Return how many workers are alive now."""
    alive = select(func.count()).select_from(WorkerRow).where(*_alive_condition(utcnow()))
    return int(session.scalar(alive) or 0)


def prune_workers(
    *, older_than_seconds: float = PRUNE_AFTER_SECONDS, database_url: str | None = None
) -> list[str]:
    """Delete workers stopped or silent for ``older_than_seconds``; return their ids.

    Their counter rows are folded into the shared ones in the same transaction.
    The first read takes no write lock, so a pass with nothing to delete costs
    one small query.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    stale = or_(WorkerRow.stopped_at < cutoff, WorkerRow.last_seen_at < cutoff)
    with session_scope(database_url, write=False) as session:
        if session.scalar(select(WorkerRow.id).where(stale).limit(1)) is None:
            return []
    with session_scope(database_url, write=True) as session:
        ids = list(session.scalars(select(WorkerRow.id).where(stale)))
        for worker_id in ids:
            counters.fold_source(session, worker_id)
        if ids:
            session.execute(delete(WorkerRow).where(WorkerRow.id.in_(ids)))
    return ids
