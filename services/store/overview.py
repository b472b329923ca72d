"""The operator's view of the whole service, across tenants: jobs by status and running jobs.

``/metrics`` and ``steep status`` read these. Tenants never see them, because
they cover every tenant's jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import core
from services.store.models import DatasetRow, Job

__all__ = ["JOB_STATUSES", "RunningJob", "count_jobs_by_status", "running_jobs"]

JOB_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class RunningJob:
    """A running job as an operator sees it, with the latest training throughput."""

    id: str
    tenant: str
    epoch: int  # epochs completed
    epochs: int
    worker_id: str | None
    attempt: int
    # Training samples per second over the latest stored epoch; None before the first
    # epoch, or when the dataset's size is unknown.
    samples_per_second: float | None


def count_jobs_by_status(session: Session) -> dict[str, int]:
    """Return the number of jobs in each status, with 0 for statuses that have none."""
    counts = dict.fromkeys(JOB_STATUSES, 0)
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
    for status, count in rows:
        counts[str(status)] = int(count)
    return counts


def running_jobs(session: Session) -> list[RunningJob]:
    """Return the running jobs, oldest start first."""
    rows = session.execute(
        select(
            Job.id,
            Job.tenant,
            Job.epoch,
            Job.epochs,
            Job.worker_id,
            Job.attempt,
            Job.dataset,
            Job.spec,
            Job.metrics,
            DatasetRow.n_samples,
        )
        .outerjoin(DatasetRow, DatasetRow.id == Job.dataset)
        .where(Job.status == "running")
        .order_by(Job.started_at, Job.id)
    )
    return [
        RunningJob(
            id=row.id,
            tenant=row.tenant,
            epoch=int(row.epoch),
            epochs=int(row.epochs),
            worker_id=row.worker_id,
            attempt=int(row.attempt),
            samples_per_second=_samples_per_second(
                row.dataset, row.n_samples, row.spec, row.metrics
            ),
        )
        for row in rows
    ]


def _samples_per_second(
    dataset: str, uploaded_samples: int | None, spec: dict[str, Any], metrics: dict[str, Any]
) -> float | None:
    """Return the training rows of the job's latest epoch divided by its ``epoch_seconds``.

    ``epoch_seconds`` also covers the epoch's validation pass, so this is the rate at
    which the job gets through its training data, not a pure step rate.
    """
    seconds = (metrics or {}).get("epoch_seconds")
    if not seconds:
        return None
    n_samples = uploaded_samples if uploaded_samples is not None else _builtin_samples(dataset)
    if n_samples is None:
        return None
    fraction = float(((spec or {}).get("training") or {}).get("validation_split") or 0.0)
    return _training_samples(n_samples, fraction) / float(seconds)


def _training_samples(n_samples: int, validation_split: float) -> int:
    """Return the training part of a split, by the rule of ``core.split.split_indices``."""
    if validation_split <= 0:
        return n_samples
    return n_samples - max(1, round(validation_split * n_samples))


@cache
def _builtin_samples(dataset: str) -> int | None:
    """Return the size of the built-in dataset ``dataset`` (an id such as ``builtin:xor``).

    Returns None for an id that names no built-in dataset, such as an upload's.
    """
    try:
        return core.load_builtin(dataset).n_samples
    except ValueError:
        return None
