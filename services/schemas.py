"""Request and response bodies of the HTTP API, named by role (``JobCreate``, ``JobPublic``).

The job spec itself is ``core.JobSpec``: the API accepts exactly what the engine trains.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel
from pydantic_core import PydanticCustomError

from core.spec import JobSpec

__all__ = [
    "TERMINAL_STATUSES",
    "Best",
    "ColumnPublic",
    "DatasetList",
    "DatasetPublic",
    "HistoryColumns",
    "JobCreate",
    "JobDetail",
    "JobError",
    "JobList",
    "JobPublic",
    "JobStatus",
    "MissingValues",
    "PredictRequest",
    "PredictResponse",
    "Problem",
    "ProblemError",
    "Progress",
    "StopReason",
    "TransitionPublic",
]

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
StopReason = Literal[
    "completed", "early_stopped", "diverged", "cancelled", "time_limit", "worker_lost", "error"
]
TERMINAL_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")

MAX_PREDICT_ROWS = 10_000

JobCreate = JobSpec


class Progress(BaseModel):
    epoch: int = Field(description="Epochs completed.")
    epochs: int = Field(description="Epochs the spec asks for.")
    fraction: float = Field(description="epoch / epochs, from 0 to 1.")
    eta_seconds: float | None = Field(description="Estimated seconds until the last epoch ends.")


class Best(BaseModel):
    epoch: int = Field(description="The epoch with the best monitored value.")
    monitor: str | None = Field(description="The monitored value's name, e.g. val_loss.")
    value: float | None = Field(description="The best monitored value; null if not finite.")


class JobError(BaseModel):
    type: str = Field(description="The exception's class name.")
    message: str


class TransitionPublic(BaseModel):
    status: JobStatus
    attempt: int
    worker_id: str | None
    reason: str | None
    at: datetime


class JobPublic(BaseModel):
    """A job as lists show it: everything but its transitions, history and weights."""

    id: str
    name: str | None
    experiment: str
    tags: dict[str, str]
    dataset: str
    spec: dict[str, Any] = Field(description="The validated job spec, with defaults filled in.")
    status: JobStatus
    stop_reason: StopReason | None
    stop_message: str | None
    cancel_requested: bool
    progress: Progress
    metrics: dict[str, float | None] = Field(
        description="The latest epoch's values; null where a value was NaN or infinite."
    )
    best: Best | None
    n_parameters: int
    attempt: int
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobDetail(JobPublic):
    """A job with its status changes, oldest first."""

    transitions: list[TransitionPublic]


class JobList(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


class HistoryColumns(RootModel[dict[str, list[int | float | None]]]):
    """Per-epoch records as columns: ``{"epoch": [1, 2], "train_loss": [0.9, 0.7], ...}``.

    Every column has one entry per returned epoch; null where an epoch has no value
    for that name or the value was NaN or infinite.
    """


RawValue = float | str | None


def _check_row_kind(row: Any) -> Any:
    """Reject a row that is neither a list nor an object in one error, not one per union member."""
    if not isinstance(row, list | dict):
        raise PydanticCustomError(
            "row_type",
            "each row must be a list of values in column order or an object of column "
            "names to values",
        )
    return row


RawRow = Annotated[list[RawValue] | dict[str, RawValue], BeforeValidator(_check_row_kind)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    inputs: list[RawRow] = Field(
        min_length=1,
        max_length=MAX_PREDICT_ROWS,
        description="Rows of raw values, each a list in the dataset's column order or an "
        "object keyed by column name. A text column takes one of its categories; an "
        "unknown category is a 422 that lists the known ones. null marks a missing value, "
        "which only models trained with preprocessing.impute accept.",
    )


class PredictResponse(BaseModel):
    outputs: list[list[float | None]] = Field(
        description="Class probabilities (n_samples, n_classes) or values (n_samples, n_outputs)."
    )
    predictions: list[Any] = Field(
        description="Class labels for classification; values for regression."
    )


class ColumnPublic(BaseModel):
    """An input column as raw rows give it, before text columns are one-hot encoded."""

    name: str
    type: Literal["number", "text"]
    categories: list[str] | None = Field(
        description="A text column's categories, each one feature named column=category."
    )


class MissingValues(BaseModel):
    count: int = Field(description="Feature values that are missing, over all rows.")
    row: int = Field(description="0-based index of the first row with a missing value.")
    line: int | None = Field(description="That row's line in the uploaded CSV; null otherwise.")
    column: str = Field(description="The first column missing a value in that row.")


class DatasetPublic(BaseModel):
    id: str
    name: str
    source: Literal["builtin", "upload"]
    task: Literal["classification", "regression"] = Field(
        description="Inferred from the target; a job spec's task overrides it."
    )
    n_samples: int
    n_features: int = Field(description="Network inputs: one per number column and category.")
    n_outputs: int
    feature_names: list[str] = Field(description="One name per network input.")
    classes: list[Any] | None
    sha256: str
    size_bytes: int
    created_at: datetime
    columns: list[ColumnPublic] = Field(
        description="The input columns of raw rows, in order, as predict takes them."
    )
    target_names: list[str]
    missing_values: MissingValues | None = Field(
        description="Where feature values are missing; jobs need preprocessing.impute then."
    )


class DatasetList(BaseModel):
    items: list[DatasetPublic]
    next_cursor: str | None


class ProblemError(BaseModel):
    loc: list[str | int] = Field(description="Path of the invalid field, e.g. ['body', 'model'].")
    msg: str


class Problem(BaseModel):
    """An error in the RFC 9457 problem-details format (``application/problem+json``)."""

    type: str = Field(description="A URI that names the kind of problem.")
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = Field(None, description="Every invalid field (422).")
    request_id: str | None = Field(None, description="The X-Request-ID of the failed request.")
