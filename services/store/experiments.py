"""Queries that summarize experiments from the job rows' summary columns, never the history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.store.models import Job

__all__ = ["best_job", "count_by_status", "list_experiment_names", "monitor_counts"]


def list_experiment_names(
    session: Session, tenant: str, *, limit: int, after: str | None
) -> list[str]:
    """Return up to ``limit`` of the tenant's experiment names after ``after``, in name order."""
    statement = select(Job.experiment).where(Job.tenant == tenant).distinct()
    if after is not None:
        statement = statement.where(Job.experiment > after)
    return list(session.scalars(statement.order_by(Job.experiment).limit(limit)))


def count_by_status(
    session: Session, tenant: str, names: Sequence[str]
) -> list[tuple[str, str, int, datetime]]:
    """Return (experiment, status, job count, latest created_at) for the named experiments."""
    rows = session.execute(
        select(Job.experiment, Job.status, func.count(), func.max(Job.created_at))
        .where(Job.tenant == tenant, Job.experiment.in_(names))
        .group_by(Job.experiment, Job.status)
    )
    return [(row[0], row[1], int(row[2]), row[3]) for row in rows]


def monitor_counts(
    session: Session, tenant: str, names: Sequence[str]
) -> list[tuple[str, str, int]]:
    """Return (experiment, monitor, count) over the succeeded jobs that have a best value."""
    rows = session.execute(
        select(Job.experiment, Job.monitor, func.count())
        .where(
            Job.tenant == tenant,
            Job.experiment.in_(names),
            Job.status == "succeeded",
            Job.best_value.is_not(None),
            Job.monitor.is_not(None),
        )
        .group_by(Job.experiment, Job.monitor)
    )
    return [(row[0], str(row[1]), int(row[2])) for row in rows]


def best_job(
    session: Session, tenant: str, experiment: str, monitor: str, descending: bool
) -> Job | None:
    """Return the succeeded job of ``experiment`` with the best ``best_value`` for ``monitor``.

    Ties go to the job whose name sorts first, then to the oldest.
    """
    order = Job.best_value.desc() if descending else Job.best_value.asc()
    return session.scalar(
        select(Job)
        .where(
            Job.tenant == tenant,
            Job.experiment == experiment,
            Job.monitor == monitor,
            Job.status == "succeeded",
            Job.best_value.is_not(None),
        )
        .order_by(order, Job.name.asc().nulls_last(), Job.created_at)
        .limit(1)
    )
