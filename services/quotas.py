"""Per-tenant quotas and per-job limits, from the settings.

Quotas (429, ``QuotaExceeded``) bound the work one tenant has in the service: a
new job, whether submitted or a sweep's trial, is admitted only while the tenant
has fewer than ``max_running_jobs_per_tenant`` jobs running and fewer than
``max_queued_jobs_per_tenant`` queued. Counts include sweep trials. Callers count
and insert in one write transaction after ``job_store.lock_tenant_jobs``, so two
concurrent submits cannot both take the last free place.

Limits (422, ``InvalidInput``) bound one job: ``training.epochs`` at most
``max_history_points``, at most ``max_parameters`` parameters, epochs times
training samples at most ``max_epoch_samples``, and an estimated peak memory
(``core.memory``) at most ``worker_memory_bytes``.

A worker checks the running quota again when it claims a job (``runs.claim`` with
``max_running_per_tenant``), so jobs admitted while few of the tenant's jobs ran
wait in the queue rather than run beyond the quota.
"""

from __future__ import annotations

import math

from sqlalchemy.orm import Session

from core.memory import MemoryEstimate, estimate_memory, format_bytes
from core.spec import Dense, JobSpec, Task
from services.errors import InvalidInput, QuotaExceeded
from services.schemas import DatasetPublic
from services.settings import Settings
from services.store import jobs as job_store

__all__ = ["check_job_limits", "check_job_quota", "free_job_slots"]

# Bounds of the Retry-After hint, in seconds.
MIN_RETRY_AFTER_SECONDS = 1
MAX_RETRY_AFTER_SECONDS = 3600


# Quotas ------------------------------------------------------------------------------


def check_job_quota(session: Session, settings: Settings, tenant: str) -> None:
    """Check that ``tenant`` may have one more queued job.

    Call in the write transaction that inserts the job, after
    ``job_store.lock_tenant_jobs``.

    Raises:
        QuotaExceeded: the tenant has ``max_running_jobs_per_tenant`` jobs running or
            ``max_queued_jobs_per_tenant`` queued. ``retry_after_seconds`` is the
            soonest estimated end of one of its running jobs, when one has an estimate.
    """
    active = job_store.count_active_jobs(session, tenant)
    retry_after = _retry_after(active)
    hint = f" (the next running job should end in about {retry_after} s)" if retry_after else ""
    if active.running >= settings.max_running_jobs_per_tenant:
        raise QuotaExceeded(
            f"tenant {tenant!r} has {_count_jobs(active.running)} running, and this server allows "
            f"{settings.max_running_jobs_per_tenant} per tenant "
            f"(STEEP_MAX_RUNNING_JOBS_PER_TENANT); submit again when one has ended{hint}, "
            "or cancel one with POST /v1/jobs/{id}/cancel",
            retry_after_seconds=retry_after,
        )
    if active.queued >= settings.max_queued_jobs_per_tenant:
        raise QuotaExceeded(
            f"tenant {tenant!r} has {_count_jobs(active.queued)} queued, and this server allows "
            f"{settings.max_queued_jobs_per_tenant} per tenant "
            f"(STEEP_MAX_QUEUED_JOBS_PER_TENANT); submit again when some have started{hint}, "
            "or cancel queued ones with POST /v1/jobs/{id}/cancel",
            retry_after_seconds=retry_after,
        )


def free_job_slots(session: Session, settings: Settings, tenant: str) -> int:
    """Return how many jobs ``tenant`` may add now without breaking a quota.

    That is 0 while it has ``max_running_jobs_per_tenant`` jobs running, and
    otherwise the places left under ``max_queued_jobs_per_tenant``. Call after
    ``job_store.lock_tenant_jobs``, in the transaction that inserts the jobs.
    """
    active = job_store.count_active_jobs(session, tenant)
    if active.running >= settings.max_running_jobs_per_tenant:
        return 0
    return max(settings.max_queued_jobs_per_tenant - active.queued, 0)


def _count_jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def _retry_after(active: job_store.ActiveJobs) -> int | None:
    if active.next_finish_seconds is None:
        return None
    seconds = math.ceil(active.next_finish_seconds)
    return min(max(seconds, MIN_RETRY_AFTER_SECONDS), MAX_RETRY_AFTER_SECONDS)


# Limits on one job ---------------------------------------------------------------------


def check_job_limits(
    settings: Settings, spec: JobSpec, dataset: DatasetPublic, task: Task, n_parameters: int
) -> None:
    """Check a job against the server's per-job limits.

    Raises:
        InvalidInput: the job breaks one of the limits: ``training.epochs`` above
            ``max_history_points``, more than ``max_parameters`` parameters, epochs
            times training samples above ``max_epoch_samples``, or an estimated
            memory above ``worker_memory_bytes``. The message names the value and
            the limit.
    """
    _check_epochs(settings, spec)
    _check_parameters(settings, spec, dataset, n_parameters)
    _check_epoch_samples(settings, spec, dataset)
    _check_memory(settings, spec, dataset, task)


def _check_epochs(settings: Settings, spec: JobSpec) -> None:
    if spec.training.epochs > settings.max_history_points:
        raise InvalidInput(
            f"training.epochs is {spec.training.epochs}, above this server's limit of "
            f"{settings.max_history_points} epochs per job (STEEP_MAX_HISTORY_POINTS); "
            "train fewer epochs",
            loc=("body", "training", "epochs"),
        )


def _check_parameters(
    settings: Settings, spec: JobSpec, dataset: DatasetPublic, n_parameters: int
) -> None:
    if n_parameters <= settings.max_parameters:
        return
    index, layer_parameters = _largest_layer(spec, dataset.n_features)
    raise InvalidInput(
        f"the model has {n_parameters:,} parameters on {dataset.n_features} input features, "
        f"above this server's limit of {settings.max_parameters:,} (STEEP_MAX_PARAMETERS); "
        f"the largest layer, model.layers[{index}], has {layer_parameters:,}: use fewer "
        "units or fewer layers",
        loc=("body", "model", "layers", index, "units"),
    )


def _largest_layer(spec: JobSpec, n_features: int) -> tuple[int, int]:
    """Return the index and parameter count of the dense layer with the most parameters."""
    largest = (0, 0)
    width = n_features
    for index, layer in enumerate(spec.model.layers):
        if isinstance(layer, Dense):
            count = width * layer.units + (layer.units if layer.bias else 0)
            if count > largest[1]:
                largest = (index, count)
            width = layer.units
    return largest


def _training_samples(spec: JobSpec, n_samples: int) -> int:
    """Return the rows the training split keeps, as ``core.split.split_indices`` splits."""
    split = spec.training.validation_split
    held_out = max(1, round(split * n_samples)) if split > 0 else 0
    return max(n_samples - held_out, 1)


def _check_epoch_samples(settings: Settings, spec: JobSpec, dataset: DatasetPublic) -> None:
    n_train = _training_samples(spec, dataset.n_samples)
    epochs = spec.training.epochs
    total = epochs * n_train
    if total <= settings.max_epoch_samples:
        return
    max_epochs = settings.max_epoch_samples // n_train
    fix = f"use at most {max_epochs:,} epochs" if max_epochs else "use a smaller dataset"
    raise InvalidInput(
        f"training.epochs is {epochs:,} and the training split of dataset {dataset.id!r} "
        f"has {n_train:,} samples, so the job would train on {total:,} samples, above this "
        f"server's limit of {settings.max_epoch_samples:,} per job "
        f"(STEEP_MAX_EPOCH_SAMPLES); {fix}",
        loc=("body", "training", "epochs"),
    )


def _check_memory(settings: Settings, spec: JobSpec, dataset: DatasetPublic, task: Task) -> None:
    last = spec.model.layers[-1]
    assert isinstance(last, Dense)  # the schema requires a dense last layer
    estimate = estimate_memory(spec, dataset.n_samples, dataset.n_features, last.units, task)
    if estimate.peak_bytes <= settings.worker_memory_bytes:
        return
    raise InvalidInput(
        f"this job needs {estimate.describe(spec.training.dtype)}; the limit is "
        f"{format_bytes(settings.worker_memory_bytes)} (STEEP_WORKER_MEMORY_BYTES): "
        f"{_memory_advice(spec, estimate)}",
        loc=_memory_location(estimate),
    )


def _memory_advice(spec: JobSpec, estimate: MemoryEstimate) -> str:
    if _data_bound(estimate):
        advice = "use a dataset with fewer samples or features"
    else:
        advice = "use fewer or smaller layers, or a smaller training.batch_size"
    if spec.training.dtype == "float64":
        advice += ", or training.dtype float32"
    return advice


def _memory_location(estimate: MemoryEstimate) -> tuple[str, ...]:
    return ("body", "dataset") if _data_bound(estimate) else ("body", "model")


def _data_bound(estimate: MemoryEstimate) -> bool:
    """Tell whether the data, rather than the model, take most of the estimate."""
    if estimate.preparation_bytes >= estimate.training_bytes:
        return True
    return estimate.dataset_bytes >= estimate.parameter_bytes + estimate.activation_bytes
