"""The experiment service: experiment names with job counts and the best job of each.

An experiment is the ``experiment`` field of its jobs; it has no row of its own.
The best job is chosen among the succeeded jobs that monitor the experiment's most
common monitor (ties: the monitor whose name sorts first), because values of
different monitors cannot be compared. The direction comes from the monitor's
name: lower is better for losses and mae, higher for accuracy and r2.

NOTE: a spec whose ``early_stopping.mode`` goes against its monitor's name (a
val_loss to maximize) is still ranked by the name's direction.
"""

from __future__ import annotations

import base64
import binascii

from sqlalchemy.orm import Session

from services.errors import InvalidInput
from services.jobs import finite_or_none
from services.settings import Settings
from services.store import experiments as experiment_store
from services.store.db import session_scope
from services.sweep_schemas import ExperimentBest, ExperimentList, ExperimentPublic, natural_mode

__all__ = ["list_experiments"]


def list_experiments(
    settings: Settings, tenant: str, *, limit: int = 50, cursor: str | None = None
) -> ExperimentList:
    """Return one page of the tenant's experiments in name order.

    Raises:
        InvalidInput: the cursor is malformed.
    """
    after = _decode_cursor(cursor) if cursor else None
    with session_scope(settings.resolved_database_url, write=False) as session:
        names = experiment_store.list_experiment_names(
            session, tenant, limit=limit + 1, after=after
        )
        page = names[:limit]
        counts = experiment_store.count_by_status(session, tenant, page)
        monitors = experiment_store.monitor_counts(session, tenant, page)
        best = {name: _best(session, tenant, name, monitors) for name in page}

    items = []
    for name in page:
        rows = [row for row in counts if row[0] == name]
        items.append(
            ExperimentPublic(
                name=name,
                n_jobs=sum(row[2] for row in rows),
                counts={row[1]: row[2] for row in rows},
                best=best[name],
                last_created_at=max(row[3] for row in rows),
            )
        )
    next_cursor = _encode_cursor(page[-1]) if len(names) > limit else None
    return ExperimentList(items=items, next_cursor=next_cursor)


def _best(
    session: Session,
    tenant: str,
    name: str,
    monitors: list[tuple[str, str, int]],
) -> ExperimentBest | None:
    used = sorted(
        ((count, monitor) for experiment, monitor, count in monitors if experiment == name),
        key=lambda item: (-item[0], item[1]),
    )
    if not used:
        return None
    monitor = used[0][1]
    job = experiment_store.best_job(
        session, tenant, name, monitor, descending=natural_mode(monitor) == "max"
    )
    value = finite_or_none(job.best_value) if job is not None else None
    if job is None or value is None:
        return None
    return ExperimentBest(
        job_id=job.id, name=job.name, monitor=monitor, value=value, epoch=job.best_epoch
    )


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidInput(
            "cursor is invalid: it is not a cursor returned by this API", loc=("query", "cursor")
        ) from error
