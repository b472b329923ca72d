"""Service-wide counters that only grow: epochs and samples trained, lease renewals, jobs reaped.

Workers and the reaper add to a counter in the same transaction as the work it
counts, so a rolled-back write counts nothing and ``/metrics`` reads the same
totals from any API process.

A counter may be split over several rows: ``<counter>`` and ``<counter>@<source>``,
one per source. A worker process writes only rows of its own source. On PostgreSQL
an upsert locks its row until the commit, so with one shared row a worker paused
inside its flush transaction would block the flushes and lease renewals of every
other worker. ``fold_source`` moves a source's rows into the shared row once that
worker has stopped, and leaves the totals unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.store.models import ServiceCounter
from services.store.upsert import upsert

__all__ = [
    "EPOCHS_TRAINED",
    "LEASE_RENEWALS",
    "REAPED_STATUSES",
    "SAMPLES_TRAINED",
    "add_counts",
    "fold_source",
    "jobs_reaped",
    "read_counters",
]

EPOCHS_TRAINED = "epochs_trained"
SAMPLES_TRAINED = "samples_trained"
LEASE_RENEWALS = "lease_renewals"
# The statuses the reaper gives a job whose lease expired.
REAPED_STATUSES = ("queued", "failed", "cancelled")

_SOURCE_SEPARATOR = "@"


def jobs_reaped(status: str) -> str:
    """Return the name of the counter of jobs the reaper moved to ``status``.

    Raises:
        ValueError: ``status`` is not one of ``REAPED_STATUSES``.
    """
    if status not in REAPED_STATUSES:
        raise ValueError(f"status must be one of {', '.join(REAPED_STATUSES)}, got {status!r}")
    return f"jobs_reaped_{status}"


def add_counts(session: Session, counts: Mapping[str, int], *, source: str | None = None) -> None:
    """Add ``counts`` to their counters inside the caller's transaction.

    ``source`` (a worker id) selects that worker's own rows; None adds to the
    shared rows. Zero counts write nothing.

    Raises:
        ValueError: a count is negative.
    """
    rows = []
    # Sorted, so that two transactions lock the same rows in the same order.
    for name, count in sorted(counts.items()):
        if count < 0:
            raise ValueError(f"counters only grow, got {count} for {name!r}")
        if count:
            rows.append({"name": _row_name(name, source), "value": int(count)})
    upsert(
        session,
        ServiceCounter,
        rows,
        index_elements=["name"],
        set_=lambda excluded: {"value": ServiceCounter.value + excluded.value},
    )


def read_counters(session: Session) -> dict[str, int]:
    """Return every counter's total over all its sources, keyed by counter name."""
    totals: dict[str, int] = {}
    for name, value in session.execute(select(ServiceCounter.name, ServiceCounter.value)):
        counter = name.split(_SOURCE_SEPARATOR, 1)[0]
        totals[counter] = totals.get(counter, 0) + int(value)
    return totals


def fold_source(session: Session, source: str) -> None:
    """Move the rows of ``source`` into the shared rows; the totals stay the same.

    A write of ``source`` after the fold creates a new row of that source, which
    the totals include as well.
    """
    suffix = _SOURCE_SEPARATOR + _source_tag(source)
    # DELETE ... RETURNING takes the values the deletion removed, so none is lost to a
    # write that lands between a read and the delete.
    removed = session.execute(
        delete(ServiceCounter)
        .where(ServiceCounter.name.endswith(suffix, autoescape=True))
        .returning(ServiceCounter.name, ServiceCounter.value)
    ).all()
    add_counts(session, {row.name.removesuffix(suffix): int(row.value) for row in removed})


def _row_name(name: str, source: str | None) -> str:
    if _SOURCE_SEPARATOR in name:
        raise ValueError(f"counter names must not contain {_SOURCE_SEPARATOR!r}, got {name!r}")
    if source is None:
        return name
    return name + _SOURCE_SEPARATOR + _source_tag(source)


def _source_tag(source: str) -> str:
    """Return a short fixed-length tag for ``source``: worker ids are longer than a name may be."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]
