"""The sweep service: what each sweep endpoint does, independent of HTTP.

A sweep stores all its trials at submit. A trial becomes a job only while the
sweep has fewer than ``max_parallel`` jobs queued or running and the tenant's job
quotas (``services.quotas``) allow one more. ``start_trials``
creates the first ones at submit. The sweeper (``services.worker.sweeper``) starts
the next ones as jobs end, stops trials by the early-stopping rule, and ends the
sweep once every trial has ended. Workers claim trial jobs like any other job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.spec import JobSpec
from services import jobs, quotas
from services.errors import Conflict, InvalidInput, NotFound
from services.jobs import Enqueue
from services.settings import Settings
from services.store import jobs as job_store
from services.store import sweeps as sweep_store
from services.store.db import session_scope
from services.store.models import Job, Sweep, SweepTrial, Transition, utcnow
from services.store.sweeps import TrialRow
from services.sweep_plan import (
    count_trials,
    culprit_parameter,
    draw_parameter_sets,
    grid_parameter_sets,
    trial_spec,
)
from services.sweep_schemas import (
    SWEEP_STATUSES,
    LeaderboardEntry,
    Objective,
    SweepCreate,
    SweepDetail,
    SweepList,
    SweepPublic,
    TrialPublic,
    finite,
    natural_mode,
)

__all__ = [
    "cancel_sweep",
    "create_sweep",
    "finish_if_done",
    "get_sweep",
    "list_sweeps",
    "objective_value",
    "start_trials",
]

logger = logging.getLogger(__name__)


# Creating ----------------------------------------------------------------------------


def create_sweep(
    settings: Settings,
    tenant: str,
    request: SweepCreate,
    enqueue: Enqueue,
    idempotency_key: str | None = None,
) -> tuple[SweepDetail, bool]:
    """Validate every trial, store the sweep and its trials, and start the first trials.

    With an ``idempotency_key`` that an earlier request used with the same body, the
    earlier sweep is returned and nothing is stored. Returns the sweep and whether
    this call created it.

    Raises:
        InvalidInput: too many trials, a parameter path that does not exist, or a
            trial whose spec is invalid or does not fit its dataset.
        Conflict: the idempotency key was used with a different body.
    """
    request_hash = _hash_request(request)
    if idempotency_key is not None:
        replayed = _replay(settings, tenant, idempotency_key, request_hash)
        if replayed is not None:
            return replayed, False

    sweep, trials = _plan(settings, tenant, request, idempotency_key, request_hash)
    try:
        with session_scope(settings.resolved_database_url) as session:
            sweep_store.insert_sweep(session, sweep, trials)
            started = start_trials(session, settings, sweep)
            detail = sweep_detail(sweep, sweep_store.list_trials(session, sweep.id))
    except IntegrityError:
        # Another request with the same key committed first; the unique constraint on
        # (tenant, idempotency_key) caught it.
        replayed = (
            _replay(settings, tenant, idempotency_key, request_hash) if idempotency_key else None
        )
        if replayed is None:
            raise
        return replayed, False

    logger.info(
        "sweep %s created with %d trials (tenant %s, %s, max_parallel %d)",
        sweep.id,
        len(trials),
        tenant,
        sweep.method,
        sweep.max_parallel,
    )
    for job_id in started:
        enqueue(job_id)
    return detail, True


def _hash_request(request: SweepCreate) -> str:
    body = request.model_dump(mode="json", exclude={"base"})
    body["base"] = request.raw_base
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(settings: Settings, tenant: str, key: str, request_hash: str) -> SweepDetail | None:
    with session_scope(settings.resolved_database_url, write=False) as session:
        sweep = sweep_store.get_sweep_by_idempotency_key(session, tenant, key)
        if sweep is None:
            return None
        if sweep.request_hash != request_hash:
            raise Conflict(
                f"Idempotency-Key {key!r} was already used for sweep {sweep.id} with a "
                "different body; send the same body to get that sweep, or use a new key"
            )
        return sweep_detail(sweep, sweep_store.list_trials(session, sweep.id))


def _plan(
    settings: Settings,
    tenant: str,
    request: SweepCreate,
    idempotency_key: str | None,
    request_hash: str,
) -> tuple[Sweep, list[SweepTrial]]:
    """Build the sweep row and its trials, validating every trial's spec and its fit."""
    _check_max_parallel(settings, request)
    n_trials = count_trials(request)
    if n_trials > settings.max_sweep_trials:
        field = "n_trials" if request.method == "random" else "parameters"
        raise InvalidInput(
            f"the sweep has {n_trials:,} trials, above this server's limit of "
            f"{settings.max_sweep_trials:,} (STEEP_MAX_SWEEP_TRIALS); use fewer values or "
            "method random with fewer "
            "n_trials",
            loc=("body", field),
        )
    seed = request.seed
    if request.method == "random" and seed is None:
        seed = secrets.randbelow(2**63)
    if request.method == "random":
        assert seed is not None and request.n_trials is not None
        parameter_sets = draw_parameter_sets(request.parameters, request.n_trials, seed)
    else:
        parameter_sets = grid_parameter_sets(request.parameters)

    sweep_id = uuid.uuid4().hex
    experiment = request.experiment or request.base.experiment
    raw_base = request.raw_base
    full_base = request.base.model_dump(mode="json")
    trials = []
    with session_scope(settings.resolved_database_url, write=False) as session:
        for index, values in enumerate(parameter_sets):
            overrides = _trial_overrides(request, sweep_id, experiment, index)
            spec = trial_spec(raw_base, full_base, index, values, overrides)
            n_parameters = _check_trial(session, settings, tenant, spec, index, values)
            _check_objective(request.objective, spec, index)
            trials.append(
                SweepTrial(
                    sweep_id=sweep_id,
                    index=index,
                    parameters=values,
                    spec=spec.model_dump(mode="json"),
                    n_parameters=n_parameters,
                    checked_epoch=0,
                )
            )

    now = utcnow()
    config = {
        "base": full_base,
        "parameters": {
            path: parameter.model_dump(mode="json")
            for path, parameter in request.parameters.items()
        },
        "objective": {"metric": request.objective.metric, "mode": request.objective.resolved_mode},
        "early_stopping": (
            request.early_stopping.model_dump(mode="json") if request.early_stopping else None
        ),
        "seed": seed,
    }
    sweep = Sweep(
        id=sweep_id,
        tenant=tenant,
        name=request.name,
        experiment=experiment,
        status="running",
        method=request.method,
        config=config,
        objective_metric=request.objective.metric,
        objective_mode=request.objective.resolved_mode,
        max_parallel=request.max_parallel,
        n_trials=len(trials),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=now,
        updated_at=now,
    )
    return sweep, trials


def _check_max_parallel(settings: Settings, request: SweepCreate) -> None:
    if request.max_parallel > settings.max_running_jobs_per_tenant:
        raise InvalidInput(
            f"max_parallel is {request.max_parallel}, above this server's limit of "
            f"{settings.max_running_jobs_per_tenant} running jobs per tenant "
            f"(STEEP_MAX_RUNNING_JOBS_PER_TENANT); set max_parallel to at most "
            f"{settings.max_running_jobs_per_tenant}",
            loc=("body", "max_parallel"),
        )


def _trial_overrides(
    request: SweepCreate, sweep_id: str, experiment: str, index: int
) -> dict[str, Any]:
    """Return the spec fields every trial gets: its name, the experiment and two tags.

    The tags ``sweep`` and ``trial`` let ``GET /v1/jobs?tag=sweep:<id>`` find the jobs.
    """
    prefix = request.name or request.base.name or f"sweep {sweep_id[:8]}"
    return {
        "name": f"{prefix} trial {index}"[:200],
        "experiment": experiment,
        "tags": {**request.base.tags, "sweep": sweep_id, "trial": str(index)},
    }


def _check_trial(
    session: Session,
    settings: Settings,
    tenant: str,
    spec: JobSpec,
    index: int,
    values: dict[str, Any],
) -> int:
    """Check a trial's spec against its dataset and the limits; return its parameter count."""
    try:
        return jobs.check_spec(session, settings, tenant, spec)
    except InvalidInput as error:
        described = ", ".join(f"{path}={value!r}" for path, value in values.items())
        error_path = ".".join(str(part) for part in error.loc[1:])
        culprit = culprit_parameter(values, error_path)
        loc = ("body", "parameters", culprit) if culprit else ("body", "base", *error.loc[1:])
        named = f"parameters.{culprit}: " if culprit else ""
        raise InvalidInput(
            f"trial {index} ({described}): {named}{error.message}", loc=loc
        ) from error


def _check_objective(objective: Objective, spec: JobSpec, index: int) -> None:
    if objective.metric.startswith("val_") and spec.training.validation_split == 0:
        raise InvalidInput(
            f"objective.metric is {objective.metric!r}, but trial {index} has "
            "training.validation_split 0, so it records no val_ values; set "
            "base.training.validation_split above 0 or use a train_ metric",
            loc=("body", "objective", "metric"),
        )


# Starting trials and ending the sweep -------------------------------------------------


def start_trials(session: Session, settings: Settings, sweep: Sweep) -> list[str]:
    """Create jobs for the next pending trials while fewer than ``max_parallel`` are active
    and the tenant's job quotas allow.

    Call with the sweep row locked (``sweep_store.lock_running_sweep``) or freshly
    inserted, in a write session. Returns the ids of the queued jobs to enqueue after
    the commit. A trial whose spec no longer fits (its dataset was deleted) gets a
    failed job instead, so that the sweep goes on. While the tenant is at a quota, no
    trial starts, and the sweeper tries again on its next pass.
    """
    free = sweep.max_parallel - sweep_store.count_active_trials(session, sweep.id)
    if free <= 0:
        return []
    job_store.lock_tenant_jobs(session, sweep.tenant)
    allowed = quotas.free_job_slots(session, settings, sweep.tenant)
    if allowed < free:
        logger.debug(
            "sweep %s: tenant %s may add %d jobs now, so %d of %d trials wait",
            sweep.id,
            sweep.tenant,
            allowed,
            free - allowed,
            free,
        )
        free = allowed
    if free <= 0:
        return []
    started = []
    for trial in sweep_store.pending_trials(session, sweep.id, free):
        spec = JobSpec.model_validate(trial.spec)
        job = jobs.new_job_row(sweep.tenant, spec, trial.n_parameters, sweep_id=sweep.id)
        failure = _recheck(session, settings, sweep.tenant, spec)
        job_store.insert_job(session, job)
        trial.job_id = job.id
        if failure is None:
            started.append(job.id)
        else:
            _fail_job(session, job.id, failure)
    session.flush()
    if started:
        logger.info("sweep %s started trial jobs %s", sweep.id, ", ".join(started))
    return started


def _recheck(session: Session, settings: Settings, tenant: str, spec: JobSpec) -> str | None:
    try:
        jobs.check_spec(session, settings, tenant, spec)
    except InvalidInput as error:
        return error.message
    return None


def _fail_job(session: Session, job_id: str, message: str) -> None:
    now = utcnow()
    job = session.get(Job, job_id)
    assert job is not None
    job.status = "failed"
    job.stop_reason = "error"
    job.error_type = "InvalidInput"
    job.error_message = message
    job.finished_at = now
    job.updated_at = now
    session.add(Transition(job_id=job_id, status="failed", attempt=0, reason=message, at=now))
    logger.info("trial job %s failed before it started: %s", job_id, message)


def finish_if_done(session: Session, sweep: Sweep) -> str | None:
    """End the sweep when every trial's job has ended; return the new status, if any.

    The sweep succeeds when at least one trial succeeded, and fails otherwise.
    Call with the sweep row locked.
    """
    trials = sweep_store.list_trials(session, sweep.id)
    if any(trial.job_id is None or trial.status in sweep_store.ACTIVE_STATUSES for trial in trials):
        return None
    n_succeeded = sum(trial.status == "succeeded" for trial in trials)
    status = "succeeded" if n_succeeded else "failed"
    message = f"{n_succeeded} of {len(trials)} trials succeeded"
    if not sweep_store.finish_sweep(session, sweep.id, status, message):
        return None
    logger.info("sweep %s %s: %s", sweep.id, status, message)
    return status


# Reading -----------------------------------------------------------------------------


def get_sweep(settings: Settings, tenant: str, sweep_id: str) -> SweepDetail:
    """Return the sweep with its leaderboard and trials.

    Raises:
        NotFound: no sweep of ``tenant`` has that id.
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        sweep = _require_sweep(session, tenant, sweep_id)
        return sweep_detail(sweep, sweep_store.list_trials(session, sweep.id))


def list_sweeps(
    settings: Settings,
    tenant: str,
    *,
    statuses: Sequence[str] = (),
    experiment: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> SweepList:
    """Return one page of the tenant's sweeps, newest first.

    Raises:
        InvalidInput: the cursor is malformed, or a status is unknown.
    """
    for status in statuses:
        if status not in SWEEP_STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(SWEEP_STATUSES)}, got {status!r}",
                loc=("query", "status"),
            )
    after = None
    if cursor:
        try:
            after = sweep_store.decode_cursor(cursor)
        except ValueError as error:
            raise InvalidInput(f"cursor is invalid: {error}", loc=("query", "cursor")) from error
    with session_scope(settings.resolved_database_url, write=False) as session:
        rows = sweep_store.list_sweeps(
            session, tenant, statuses=statuses, experiment=experiment, limit=limit + 1, after=after
        )
        page = rows[:limit]
        counts = sweep_store.count_trials_by_status(session, [sweep.id for sweep in page])
    next_cursor = sweep_store.encode_cursor(page[-1]) if len(rows) > limit else None
    items = [SweepPublic(**_public_fields(sweep, counts[sweep.id])) for sweep in page]
    return SweepList(items=items, next_cursor=next_cursor)


def _require_sweep(session: Session, tenant: str, sweep_id: str) -> Sweep:
    sweep = sweep_store.get_sweep(session, tenant, sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id!r} not found")
    return sweep


def sweep_detail(sweep: Sweep, trials: Sequence[TrialRow]) -> SweepDetail:
    """Build the detailed view of a sweep from its row and its trials."""
    objective = _objective(sweep)
    public_trials = [_trial_public(sweep, trial) for trial in trials]
    counts: dict[str, int] = {}
    for trial in public_trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    return SweepDetail(
        **_public_fields(sweep, counts),
        base=sweep.config["base"],
        parameters=sweep.config["parameters"],
        leaderboard=_leaderboard(objective, trials),
        trials=public_trials,
    )


def _public_fields(sweep: Sweep, counts: dict[str, int]) -> dict[str, Any]:
    if sweep.status == "cancelled" and "pending" in counts:
        counts = dict(counts)
        counts["cancelled"] = counts.get("cancelled", 0) + counts.pop("pending")
    return {
        "id": sweep.id,
        "name": sweep.name,
        "experiment": sweep.experiment,
        "status": sweep.status,
        "method": sweep.method,
        "objective": {"metric": sweep.objective_metric, "mode": sweep.objective_mode},
        "max_parallel": sweep.max_parallel,
        "n_trials": sweep.n_trials,
        "seed": sweep.config.get("seed"),
        "early_stopping": sweep.config.get("early_stopping"),
        "counts": counts,
        "stop_message": sweep.stop_message,
        "created_at": sweep.created_at,
        "finished_at": sweep.finished_at,
    }


def _trial_status(sweep: Sweep, trial: TrialRow) -> str:
    if trial.job_id is None:
        return "cancelled" if sweep.status == "cancelled" else "pending"
    return trial.status or "deleted"


def _trial_public(sweep: Sweep, trial: TrialRow) -> TrialPublic:
    value, _ = objective_value(_objective(sweep), trial)
    return TrialPublic.model_validate(
        {
            "index": trial.index,
            "parameters": trial.parameters,
            "job_id": trial.job_id,
            "status": _trial_status(sweep, trial),
            "stop_reason": trial.stop_reason,
            "stop_message": trial.stop_message,
            "epoch": trial.epoch,
            "value": value,
        }
    )


def _objective(sweep: Sweep) -> Objective:
    return Objective.model_validate(
        {"metric": sweep.objective_metric, "mode": sweep.objective_mode}
    )


def objective_value(objective: Objective, trial: TrialRow) -> tuple[float | None, int]:
    """Return a trial's objective value and the epoch it is from.

    That is the job's best value when the job monitors the objective metric in the
    objective's direction, and otherwise the metric's value at the latest epoch.
    """
    monitor_mode = trial.monitor_mode or (natural_mode(trial.monitor) if trial.monitor else None)
    if (
        trial.monitor == objective.metric
        and monitor_mode == objective.resolved_mode
        and trial.best_epoch is not None
    ):
        return finite(trial.best_value), trial.best_epoch
    value = trial.metrics.get(objective.metric)
    return (finite(value) if isinstance(value, int | float) else None), trial.epoch


def _leaderboard(objective: Objective, trials: Sequence[TrialRow]) -> list[LeaderboardEntry]:
    ranked = []
    for trial in trials:
        # A failed trial's values are not a model's; a cancelled one keeps what it trained.
        if trial.job_id is None or trial.status not in ("running", "succeeded", "cancelled"):
            continue
        value, epoch = objective_value(objective, trial)
        if value is not None:
            ranked.append((value, epoch, trial))
    sign = 1.0 if objective.resolved_mode == "min" else -1.0
    ranked.sort(key=lambda entry: (sign * entry[0], entry[2].index))
    return [
        LeaderboardEntry.model_validate(
            {
                "rank": rank,
                "index": trial.index,
                "job_id": trial.job_id,
                "status": trial.status,
                "value": value,
                "epoch": epoch,
                "parameters": trial.parameters,
            }
        )
        for rank, (value, epoch, trial) in enumerate(ranked, start=1)
    ]


# Cancelling --------------------------------------------------------------------------


def cancel_sweep(settings: Settings, tenant: str, sweep_id: str) -> SweepDetail:
    """Cancel a running sweep: no more trials start, queued ones are cancelled, and the
    workers of running ones are asked to stop.

    Raises:
        NotFound: no sweep of ``tenant`` has that id.
        Conflict: the sweep has already ended.
    """
    with session_scope(settings.resolved_database_url) as session:
        sweep = _require_sweep(session, tenant, sweep_id)
        if not sweep_store.finish_sweep(session, sweep.id, "cancelled", "cancelled by request"):
            raise Conflict(
                f"sweep {sweep_id} has already ended with status {sweep.status}; only running "
                "sweeps can be cancelled"
            )
        for trial in sweep_store.list_trials(session, sweep.id):
            if trial.job_id is None or trial.status not in sweep_store.ACTIVE_STATUSES:
                continue
            reason = f"sweep {sweep_id} was cancelled"
            if not job_store.cancel_queued_job(session, tenant, trial.job_id, reason):
                job_store.request_cancel(session, tenant, trial.job_id)
        session.expire_all()
        logger.info("sweep %s cancelled", sweep_id)
        sweep = _require_sweep(session, tenant, sweep_id)
        return sweep_detail(sweep, sweep_store.list_trials(session, sweep.id))
