"""The job service: what each job endpoint does, independent of HTTP.

Every function takes the settings (for the database URL and the limits) and the
tenant, opens its own short session, and returns a schema from ``services.schemas``
or raises an exception from ``services.errors``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.spec import Dense, JobSpec, LossSpec, ModelSpec
from services import catalog, quotas
from services.datasets import load_dataset
from services.errors import Conflict, InvalidInput, NotFound
from services.schemas import (
    TERMINAL_STATUSES,
    Best,
    DatasetPublic,
    JobDetail,
    JobError,
    JobList,
    JobPublic,
    Progress,
    TransitionPublic,
)
from services.settings import Settings
from services.store import history as history_store
from services.store import jobs as job_store
from services.store.db import get_engine, session_scope
from services.store.models import Job, Transition, utcnow

__all__ = [
    "Enqueue",
    "HistoryResult",
    "cancel_job",
    "count_parameters",
    "create_job",
    "delete_job",
    "get_history",
    "get_job",
    "list_jobs",
    "new_job_row",
]

logger = logging.getLogger(__name__)

Enqueue = Callable[[str], bool]

# A job or a transition, as an ORM object or as a row of the columns its public view shows
# (``job_store.read_job_view``). The view builders read either by attribute name.
JobRow = Job | job_store.ViewRow
TransitionRow = Transition | job_store.ViewRow


# Reading -----------------------------------------------------------------------------


def get_job(settings: Settings, tenant: str, job_id: str) -> JobDetail:
    """Return the job with its transitions.

    Raises:
        NotFound: no job of ``tenant`` has that id.
    """
    # A plain connection and Core statements, because pollers call this more than any other
    # endpoint and an ORM session cost about four times as much (job_store.JOB_VIEW_QUERY).
    engine = get_engine(settings.resolved_database_url)
    with engine.connect() as connection, connection.begin():
        job = job_store.read_job_view(connection, tenant, job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found")
        transitions = job_store.read_transition_views(connection, job_id)
    return job_detail(job, transitions)


def require_job(session: Session, tenant: str, job_id: str) -> Job:
    job = job_store.get_job(session, tenant, job_id)
    if job is None:
        raise NotFound(f"job {job_id!r} not found")
    return job


def job_public(job: Job) -> JobPublic:
    """Build the public view of a job row."""
    return JobPublic(**_public_fields(job))


def job_detail(job: JobRow, transitions: Sequence[TransitionRow]) -> JobDetail:
    """Build the detailed view of a job row and its transitions."""
    return JobDetail(
        **_public_fields(job),
        transitions=[transition_public(transition) for transition in transitions],
    )


def transition_public(transition: TransitionRow) -> TransitionPublic:
    return TransitionPublic(
        status=transition.status,
        attempt=transition.attempt,
        worker_id=transition.worker_id,
        reason=transition.reason,
        at=transition.at,
    )


def _public_fields(job: JobRow) -> dict[str, Any]:
    best = None
    if job.best_epoch is not None:
        best = Best(epoch=job.best_epoch, monitor=job.monitor, value=finite_or_none(job.best_value))
    error = None
    if job.error_type or job.error_message:
        error = JobError(type=job.error_type or "Error", message=job.error_message or "")
    return {
        "id": job.id,
        "name": job.name,
        "experiment": job.experiment,
        "tags": job.tags,
        "dataset": job.dataset,
        "spec": job.spec,
        "status": job.status,
        "stop_reason": job.stop_reason,
        "stop_message": job.stop_message,
        "cancel_requested": job.cancel_requested,
        "progress": Progress(
            epoch=job.epoch,
            epochs=job.epochs,
            fraction=min(job.epoch / job.epochs, 1.0) if job.epochs else 0.0,
            eta_seconds=finite_or_none(job.eta_seconds),
        ),
        "metrics": {name: finite_or_none(value) for name, value in job.metrics.items()},
        "best": best,
        "n_parameters": job.n_parameters,
        "attempt": job.attempt,
        "error": error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def finite_or_none(value: Any) -> float | None:
    """Return value as a float, or None when it is missing, not a number, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# Listing -----------------------------------------------------------------------------


def list_jobs(
    settings: Settings,
    tenant: str,
    *,
    statuses: Sequence[str] = (),
    experiment: str | None = None,
    dataset: str | None = None,
    tags: Sequence[str] = (),
    sort: str = "-created_at",
    limit: int = 50,
    cursor: str | None = None,
) -> JobList:
    """Return one page of the tenant's jobs; see ``job_store.list_jobs`` for the order.

    Raises:
        InvalidInput: ``sort``, a ``tag`` or ``cursor`` is malformed.
    """
    sort_key = parse_sort(sort)
    after = None
    if cursor:
        try:
            after = job_store.decode_cursor(sort_key, cursor)
        except ValueError as error:
            raise InvalidInput(f"cursor is invalid: {error}", loc=("query", "cursor")) from error
    query = job_store.JobQuery(
        sort=sort_key,
        limit=limit + 1,  # an extra row beyond the page means a next page exists
        statuses=statuses,
        experiment=experiment,
        dataset=dataset,
        tags=[parse_tag(tag) for tag in tags],
        after=after,
    )
    with session_scope(settings.resolved_database_url, write=False) as session:
        rows = job_store.list_jobs(session, tenant, query)
    page = rows[:limit]
    next_cursor = job_store.encode_cursor(sort_key, page[-1]) if len(rows) > limit else None
    return JobList(items=[job_public(job) for job in page], next_cursor=next_cursor)


# The columns and the metrics every epoch record can carry (see core.training).
SORT_KEYS = (
    "created_at",
    "finished_at",
    *(
        f"{split}_{metric}"
        for split in ("train", "val")
        for metric in ("loss", "accuracy", "r2", "mae")
    ),
    "lr",
    "epoch_seconds",
)

_GRAD_NORM_KEY = re.compile(r"grad_norm\.dense_[0-9]{1,3}")


def parse_sort(sort: str) -> job_store.SortKey:
    """Parse ``created_at``, ``-finished_at``, ``-val_accuracy`` and the like.

    Raises:
        InvalidInput: not a sort key.
    """
    name = sort.removeprefix("-")
    if name not in SORT_KEYS and not _GRAD_NORM_KEY.fullmatch(name):
        raise InvalidInput(
            f"sort must be one of {', '.join(SORT_KEYS)} or grad_norm.dense_<i>, with a "
            f"leading '-' for descending order; got {sort!r}",
            loc=("query", "sort"),
        )
    return job_store.SortKey(name=name, descending=sort.startswith("-"))


def parse_tag(tag: str) -> tuple[str, str]:
    """Split a ``key:value`` tag filter at its first colon.

    Raises:
        InvalidInput: there is no colon or the key is empty.
    """
    key, colon, value = tag.partition(":")
    if not colon or not key:
        raise InvalidInput(
            f"tag must have the form key:value, such as team:vision; got {tag!r}",
            loc=("query", "tag"),
        )
    return key, value


# Creating ----------------------------------------------------------------------------


def create_job(
    settings: Settings,
    tenant: str,
    spec: JobSpec,
    enqueue: Enqueue,
    idempotency_key: str | None = None,
) -> tuple[JobDetail, bool]:
    """Check the spec against its dataset and the server's limits, store the job, enqueue it.

    With an ``idempotency_key`` that an earlier request used with the same spec, the
    earlier job is returned and nothing is stored or sent. Returns the job and
    whether this call created it.

    Raises:
        InvalidInput: the dataset is unknown, or the model does not fit it or the limits.
        Conflict: the idempotency key was used with a different spec.
        QuotaExceeded: the tenant has as many jobs running or queued as its quotas allow.
            A replay of an earlier request is never refused by a quota.
    """
    spec_json = spec.model_dump(mode="json")
    request_hash = _hash_spec(spec_json)
    if idempotency_key is not None:
        replayed = _replay(settings, tenant, idempotency_key, request_hash)
        if replayed is not None:
            return replayed, False

    with session_scope(settings.resolved_database_url, write=False) as session:
        n_parameters = check_spec(session, settings, tenant, spec)
    job = _new_job(tenant, spec, spec_json, n_parameters, idempotency_key, request_hash)
    try:
        detail, created = _insert_within_quota(settings, tenant, job, request_hash)
    except IntegrityError:
        # Another request with the same key committed between the replay check and
        # this insert; the unique constraint on (tenant, idempotency_key) caught it.
        replayed = (
            _replay(settings, tenant, idempotency_key, request_hash) if idempotency_key else None
        )
        if replayed is None:
            raise
        return replayed, False
    if not created:
        return detail, False

    logger.info("job %s queued (tenant %s, dataset %s)", job.id, tenant, job.dataset)
    enqueue(job.id)
    return detail, True


def _hash_spec(spec_json: dict[str, Any]) -> str:
    canonical = json.dumps(spec_json, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _insert_within_quota(
    settings: Settings, tenant: str, job: Job, request_hash: str
) -> tuple[JobDetail, bool]:
    """Insert the job if the tenant's quotas allow; return it and whether it was inserted.

    The tenant's lock makes the quota count, the insert and the commit one step for
    concurrent submits. A job that another request with the same idempotency key
    stored while this one waited for the lock is returned instead, before the quota
    check, so that a replay never gets a 429.

    Raises:
        QuotaExceeded: the tenant is at its running or queued quota.
        Conflict: the idempotency key was used with a different spec meanwhile.
    """
    with session_scope(settings.resolved_database_url) as session:
        job_store.lock_tenant_jobs(session, tenant)
        if job.idempotency_key is not None:
            replayed = _replay_in(session, tenant, job.idempotency_key, request_hash)
            if replayed is not None:
                return replayed, False
        quotas.check_job_quota(session, settings, tenant)
        job_store.insert_job(session, job)
        return job_detail(job, job_store.list_transitions(session, job.id)), True


def _replay(settings: Settings, tenant: str, key: str, request_hash: str) -> JobDetail | None:
    """Return the job an earlier request with ``key`` created, if any.

    Raises:
        Conflict: that request had another body.
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        return _replay_in(session, tenant, key, request_hash)


def _replay_in(session: Session, tenant: str, key: str, request_hash: str) -> JobDetail | None:
    job = job_store.get_job_by_idempotency_key(session, tenant, key)
    if job is None:
        return None
    if job.request_hash != request_hash:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for job {job.id} with a different "
            "spec; send the same spec to get that job, or use a new key for a new job"
        )
    return job_detail(job, job_store.list_transitions(session, job.id))


def _new_job(
    tenant: str,
    spec: JobSpec,
    spec_json: dict[str, Any],
    n_parameters: int,
    idempotency_key: str | None,
    request_hash: str,
) -> Job:
    now = utcnow()
    stopping = spec.training.early_stopping
    if stopping is not None:
        monitor = stopping.monitor
    else:
        # The training loop's default; the worker writes the one it actually uses.
        monitor = "val_loss" if spec.training.validation_split > 0 else "train_loss"
    return Job(
        id=uuid.uuid4().hex,
        tenant=tenant,
        name=spec.name,
        experiment=spec.experiment,
        tags=dict(spec.tags),
        dataset=spec.dataset,
        spec=spec_json,
        status="queued",
        cancel_requested=False,
        attempt=0,
        epoch=0,
        epochs=spec.training.epochs,
        metrics={},
        monitor=monitor,
        n_parameters=n_parameters,
        version=0,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=now,
        updated_at=now,
        enqueued_at=now,
    )


def new_job_row(tenant: str, spec: JobSpec, n_parameters: int, *, sweep_id: str) -> Job:
    """Build the queued job row of a sweep's trial, without storing or enqueueing it."""
    spec_json = spec.model_dump(mode="json")
    job = _new_job(tenant, spec, spec_json, n_parameters, None, _hash_spec(spec_json))
    job.sweep_id = sweep_id
    return job


# Checking a spec against its dataset and the limits -----------------------------------


def check_spec(session: Session, settings: Settings, tenant: str, spec: JobSpec) -> int:
    """Check what the schema alone cannot, and return the model's parameter count.

    Raises:
        InvalidInput: the dataset is unknown, has missing values the spec does not
            impute, or the last layer's units, the loss or the early-stopping monitor
            do not fit the dataset. Also when the job breaks a per-job limit of
            ``quotas.check_job_limits``: epochs, parameters, epochs times training
            samples, or estimated memory.
    """
    dataset = catalog.require_dataset(session, tenant, spec.dataset)
    catalog.check_dataset_fits(spec, dataset)
    task = spec.resolved_task(dataset.task)
    _check_outputs(session, tenant, spec, dataset, task)
    _check_monitor(spec, task)
    n_parameters = count_parameters(spec.model, dataset.n_features)
    quotas.check_job_limits(settings, spec, dataset, task, n_parameters)
    return n_parameters


def count_parameters(model: ModelSpec, n_features: int) -> int:
    """Count the weights and biases of ``model`` on ``n_features`` inputs, without allocating."""
    width = n_features
    total = 0
    for layer in model.layers:
        if isinstance(layer, Dense):
            total += width * layer.units + (layer.units if layer.bias else 0)
            width = layer.units
    return total


def _check_outputs(
    session: Session, tenant: str, spec: JobSpec, dataset: DatasetPublic, task: str
) -> None:
    """Check that the last layer has as many units as the loss needs for this dataset."""
    last_index = len(spec.model.layers) - 1
    last = spec.model.layers[last_index]
    assert isinstance(last, Dense)  # the schema requires a dense last layer
    loss = spec.resolved_loss("classification" if task == "classification" else "regression")

    if task == "regression" and dataset.task == "regression":
        needed = dataset.n_outputs
        targets = "target" if needed == 1 else "targets"
        reason = f"dataset {dataset.id!r} has {needed} regression {targets}"
    elif task == "regression":
        needed = 1
        reason = (
            f"{_regression_cause(spec, loss)} makes this a regression on the class index of "
            f"classification dataset {dataset.id!r}, one target (to classify, use the loss "
            "cross_entropy)"
        )
    else:
        n_classes = _count_classes(session, tenant, dataset)
        if loss.type == "binary_cross_entropy":
            if n_classes != 2:
                raise InvalidInput(
                    f"loss binary_cross_entropy needs exactly 2 classes, but dataset "
                    f"{dataset.id!r} has {n_classes}; use cross_entropy",
                    loc=("body", "loss"),
                )
            needed, reason = 1, "binary_cross_entropy needs one output (the logit of class 1)"
        else:
            needed = n_classes
            reason = (
                f"dataset {dataset.id!r} has {n_classes} classes and {loss.type} needs "
                "one output per class"
            )
    if last.units != needed:
        raise InvalidInput(
            f"model.layers[{last_index}].units is {last.units}, but {reason}; "
            f"set units to {needed}",
            loc=("body", "model", "layers", last_index, "units"),
        )


def _regression_cause(spec: JobSpec, loss: LossSpec) -> str:
    """Name what made a job a regression: the spec's task, or else its loss."""
    return "task regression" if spec.task == "regression" else f"the loss {loss.type}"


def _count_classes(session: Session, tenant: str, dataset: DatasetPublic) -> int:
    """The number of classes the training loop will find in the dataset."""
    if dataset.classes is not None:
        n_classes = len(dataset.classes)
    else:
        # A classification loss on a regression dataset: every distinct target is a class.
        n_classes = len(np.unique(load_dataset(session, tenant, dataset.id).y))
    if n_classes < 2:
        raise InvalidInput(
            f"classification needs at least 2 classes, but dataset {dataset.id!r} has "
            f"{n_classes}; use a regression loss such as squared_error",
            loc=("body", "loss"),
        )
    return n_classes


def _check_monitor(spec: JobSpec, task: str) -> None:
    stopping = spec.training.early_stopping
    if stopping is None:
        return
    needs = None
    if stopping.monitor.endswith("accuracy"):
        needs = "classification"
    elif stopping.monitor.endswith(("r2", "mae")):
        needs = "regression"
    if needs is not None and needs != task:
        raise InvalidInput(
            f"training.early_stopping.monitor is {stopping.monitor!r}, which needs a {needs} "
            f"task, but this job is {task}; monitor train_loss or val_loss instead",
            loc=("body", "training", "early_stopping", "monitor"),
        )


# History -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryResult:
    """History columns and their ETag; ``columns`` is None when the client's copy is current."""

    etag: str
    columns: dict[str, list[int | float | None]] | None


def get_history(
    settings: Settings,
    tenant: str,
    job_id: str,
    *,
    after_epoch: int = 0,
    max_points: int | None = None,
    if_none_match: str | None = None,
) -> HistoryResult:
    """Return the job's epochs after ``after_epoch`` as columns, downsampled to ``max_points``.

    The ETag changes whenever the job row's version does, so a client that sends it
    back in ``If-None-Match`` gets ``columns=None`` until a worker writes again.

    Raises:
        NotFound: no job of ``tenant`` has that id.
        InvalidInput: ``max_points`` is below ``history_store.MIN_POINTS``.
    """
    if max_points is not None and max_points < history_store.MIN_POINTS:
        raise InvalidInput(
            f"max_points must be at least {history_store.MIN_POINTS} (the first and last "
            f"epoch and the minimum and maximum of train_loss and val_loss), got {max_points}",
            loc=("query", "max_points"),
        )
    with session_scope(settings.resolved_database_url, write=False) as session:
        # The row is read before the history, so the history is never older than the ETag.
        job = require_job(session, tenant, job_id)
        etag = _history_etag(job, after_epoch, max_points)
        if if_none_match is not None and etag_matches(if_none_match, etag):
            return HistoryResult(etag=etag, columns=None)
        columns = history_store.read_history_columns(session, job.id, after_epoch)
    if max_points is not None:
        columns = history_store.downsample(columns, max_points)
    return HistoryResult(etag=etag, columns=columns)


def _history_etag(job: Job, after_epoch: int, max_points: int | None) -> str:
    key = f"{job.id}:{job.version}:{after_epoch}:{max_points}"
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Apply If-None-Match's weak comparison: any listed tag, or ``*``, matches."""
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


# Cancelling and deleting ----------------------------------------------------------------

_CANCEL_RETRIES = 3


def cancel_job(settings: Settings, tenant: str, job_id: str) -> JobDetail:
    """Cancel a queued job at once, or ask the worker of a running job to stop.

    Raises:
        NotFound: no job of ``tenant`` has that id.
        Conflict: the job has already finished.
    """
    with session_scope(settings.resolved_database_url) as session:
        for _ in range(_CANCEL_RETRIES):
            if job_store.cancel_queued_job(session, tenant, job_id, "cancelled by request"):
                logger.info("job %s cancelled while queued", job_id)
                break
            if job_store.request_cancel(session, tenant, job_id):
                logger.info("job %s: cancel requested while running", job_id)
                break
            job = require_job(session, tenant, job_id)
            if job.status in TERMINAL_STATUSES:
                raise Conflict(
                    f"job {job_id} has already finished with status {job.status}; "
                    "only queued or running jobs can be cancelled"
                )
            # Otherwise the job changed between queued and running under us: try again.
        session.expire_all()
        job = require_job(session, tenant, job_id)
        return job_detail(job, job_store.list_transitions(session, job.id))


def delete_job(settings: Settings, tenant: str, job_id: str) -> None:
    """Delete a job that is not running, with its history, checkpoint and weights.

    Raises:
        NotFound: no job of ``tenant`` has that id.
        Conflict: the job is running; cancel it and delete it once it has stopped.
    """
    with session_scope(settings.resolved_database_url) as session:
        if job_store.delete_job(session, tenant, job_id):
            logger.info("job %s deleted", job_id)
            return
        require_job(session, tenant, job_id)
    raise Conflict(
        f"job {job_id} is running; cancel it with POST /v1/jobs/{job_id}/cancel "
        "and delete it once its status is cancelled"
    )


# Event reading for the SSE stream --------------------------------------------------------


@dataclass(frozen=True)
class EventBatch:
    """The transitions and epoch records that are newer than a stream's position."""

    version: int
    status: str
    stop_reason: str | None
    transitions: list[tuple[int, TransitionPublic]]  # (transition id, transition)
    records: list[tuple[int, dict[str, Any]]]  # (epoch, values)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


def read_events(
    settings: Settings,
    tenant: str,
    job_id: str,
    *,
    after_epoch: int,
    after_transition: int,
    known_version: int | None = None,
) -> EventBatch | None:
    """Read the transitions and epochs after the given position; None if the row's version
    is still ``known_version``.

    Raises:
        NotFound: no job of ``tenant`` has that id (any more).
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        job = require_job(session, tenant, job_id)
        if known_version is not None and job.version == known_version:
            return None
        # Transitions before history: the final epochs commit together with the final
        # status, so a terminal transition read here implies its epochs are visible next.
        transitions = job_store.list_transitions(session, job.id, after_transition)
        columns = history_store.read_history_columns(session, job.id, after_epoch)
    records = [
        (int(epoch), {name: values[index] for name, values in columns.items()})
        for index, epoch in enumerate(columns["epoch"])
        if epoch is not None
    ]
    return EventBatch(
        version=job.version,
        status=job.status,
        stop_reason=job.stop_reason,
        transitions=[(row.id, transition_public(row)) for row in transitions],
        records=records,
    )
