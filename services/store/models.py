"""SQLAlchemy models: datasets, jobs, per-epoch history, checkpoints, weights, transitions.

The job row is the truth about a job. It carries summary columns (status,
progress, latest metrics, best value) so that lists and dashboards never read
history. Large values (dataset files, checkpoints, weights) live in tables of
their own, so that reading a job or a dataset never loads them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import BYTEA, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiKey",
    "Base",
    "Checkpoint",
    "DatasetBlob",
    "DatasetRow",
    "HistoryRow",
    "Job",
    "ServiceCounter",
    "Sweep",
    "SweepTrial",
    "Transition",
    "Weights",
    "WorkerRow",
    "utcnow",
]

JsonType = JSON().with_variant(JSONB(), "postgresql")
BlobType = LargeBinary().with_variant(BYTEA(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JsonType,
        list[Any]: JsonType,
        datetime: UTCDateTime,
    }


class DatasetRow(Base):
    """An uploaded dataset's description; built-in datasets are not stored."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(20))
    n_samples: Mapped[int] = mapped_column(Integer)
    n_features: Mapped[int] = mapped_column(Integer)
    n_outputs: Mapped[int] = mapped_column(Integer)
    feature_names: Mapped[list[Any]]
    target_names: Mapped[list[Any]]
    classes: Mapped[list[Any] | None]
    encoding: Mapped[dict[str, Any]] = mapped_column(
        comment="How raw rows become features: text columns and their categories."
    )
    file_format: Mapped[str] = mapped_column(String(10))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("tenant", "sha256", name="uq_datasets_tenant_sha256"),)


class DatasetBlob(Base):
    """The dataset's arrays as NPZ bytes, kept apart so listing datasets never loads them."""

    __tablename__ = "dataset_blobs"

    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(BlobType)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(200))
    experiment: Mapped[str] = mapped_column(String(200))
    tags: Mapped[dict[str, Any]]
    dataset: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    sweep_id: Mapped[str | None] = mapped_column(String(64), index=True)

    status: Mapped[str] = mapped_column(String(20))
    stop_reason: Mapped[str | None] = mapped_column(String(20))
    stop_message: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_request: Mapped[str | None] = mapped_column(
        String(20),
        comment="A stop reason another process asks the worker to end with, e.g. early_stopped.",
    )
    stop_request_message: Mapped[str | None] = mapped_column(Text)

    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]

    epoch: Mapped[int] = mapped_column(Integer, default=0, comment="Epochs completed.")
    epochs: Mapped[int] = mapped_column(Integer)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(comment="The latest epoch's values.")
    monitor: Mapped[str | None] = mapped_column(String(50))
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_value: Mapped[float | None] = mapped_column(Float)
    n_parameters: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(
        Integer, default=0, comment="Bumped by every write; the history ETag and SSE use it."
    )

    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        Index("ix_jobs_tenant_created", "tenant", "created_at", "id"),
        Index("ix_jobs_tenant_status", "tenant", "status"),
        Index("ix_jobs_tenant_experiment", "tenant", "experiment"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    )


class HistoryRow(Base):
    """One epoch of one job: every recorded value, keyed by name."""

    __tablename__ = "job_history"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    values: Mapped[dict[str, Any]]


class Checkpoint(Base):
    """The latest checkpoint of a job (a ``core.TrainingState`` as NPZ bytes)."""

    __tablename__ = "job_checkpoints"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(BlobType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Weights(Base):
    """The trained parameters of a finished job, as a steep parameter file (NPZ bytes)."""

    __tablename__ = "job_weights"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(BlobType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Transition(Base):
    """A change of a job's status: when, which attempt, on which worker, and why."""

    __tablename__ = "job_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Sweep(Base):
    """A sweep: one base spec run over a grid or a random sample of hyperparameters.

    ``config`` is the validated request (base spec, parameters, objective, early
    stopping). The trials live in ``sweep_trials``, and each becomes a job when the
    sweeper starts it.
    """

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(200))
    experiment: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), comment="running, succeeded, failed, cancelled")
    method: Mapped[str] = mapped_column(String(10))
    config: Mapped[dict[str, Any]]
    objective_metric: Mapped[str] = mapped_column(String(100))
    objective_mode: Mapped[str] = mapped_column(String(3))
    max_parallel: Mapped[int] = mapped_column(Integer)
    n_trials: Mapped[int] = mapped_column(Integer)
    stop_message: Mapped[str | None] = mapped_column(Text)

    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_sweeps_tenant_idempotency_key"),
        Index("ix_sweeps_tenant_created", "tenant", "created_at", "id"),
        Index("ix_sweeps_status", "status"),
    )


class SweepTrial(Base):
    """One trial of a sweep: its parameter values, its spec, and its job once started."""

    __tablename__ = "sweep_trials"

    sweep_id: Mapped[str] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    parameters: Mapped[dict[str, Any]]
    spec: Mapped[dict[str, Any]] = mapped_column(comment="The trial's validated job spec.")
    n_parameters: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    checked_epoch: Mapped[int] = mapped_column(
        Integer, default=0, comment="The last epoch the early-stopping rule judged this trial at."
    )


class ApiKey(Base):
    """An API key of a tenant. Only the SHA-256 of the secret is stored.

    ``prefix`` is the start of the secret, kept so that a person can tell keys apart
    in ``steep keys ls``; it is too short to authenticate with.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    operator: Mapped[bool] = mapped_column(
        Boolean, default=False, comment="May read /metrics, which covers every tenant."
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class WorkerRow(Base):
    """A worker process, as it last reported itself: alive while ``last_seen_at`` is recent."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), comment="The job it is training.")
    stopped_at: Mapped[datetime | None]


class ServiceCounter(Base):
    """A service-wide counter that only grows (epochs trained, leases renewed, jobs reaped).

    Workers and the reaper add to it in the same transaction as the work it counts, so
    ``/metrics`` reads the truth from any API process.
    """

    __tablename__ = "service_counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
