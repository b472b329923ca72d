"""The typed results of the Python client: jobs, pages, predictions, sweeps, experiments.

Each class is a frozen dataclass built by ``from_json`` from the API's JSON, and
keeps that JSON in ``raw`` for fields added after this client was written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

__all__ = [
    "TERMINAL_STATUSES",
    "Best",
    "Experiment",
    "ExperimentBest",
    "Job",
    "JobError",
    "LeaderboardEntry",
    "Page",
    "Prediction",
    "Progress",
    "Sweep",
    "Transition",
    "Trial",
]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
SWEEP_TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

T = TypeVar("T")


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next one (None at the end)."""

    items: list[T]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> Page[T]:
        return cls(items=[parse(item) for item in data["items"]], next_cursor=data["next_cursor"])


# Jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    epoch: int  # epochs completed
    epochs: int  # epochs the spec sets
    fraction: float
    eta_seconds: float | None


@dataclass(frozen=True)
class Best:
    """The epoch with the best monitored value, and that value (None if not finite)."""

    epoch: int
    monitor: str | None
    value: float | None


@dataclass(frozen=True)
class JobError:
    type: str
    message: str


@dataclass(frozen=True)
class Transition:
    """A change of a job's status."""

    status: str
    attempt: int
    worker_id: str | None
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class Job:
    """A job as the API returns it; ``transitions`` is empty in lists."""

    id: str
    status: str
    name: str | None
    experiment: str
    tags: dict[str, str]
    dataset: str
    spec: dict[str, Any]
    stop_reason: str | None
    stop_message: str | None
    cancel_requested: bool
    progress: Progress
    metrics: dict[str, float | None]
    best: Best | None
    n_parameters: int
    attempt: int
    error: JobError | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    transitions: list[Transition]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        progress = data.get("progress") or {}
        best = data.get("best")
        error = data.get("error")
        return cls(
            id=data["id"],
            status=data["status"],
            name=data.get("name"),
            experiment=data.get("experiment", "default"),
            tags=dict(data.get("tags") or {}),
            dataset=data.get("dataset", ""),
            spec=dict(data.get("spec") or {}),
            stop_reason=data.get("stop_reason"),
            stop_message=data.get("stop_message"),
            cancel_requested=bool(data.get("cancel_requested", False)),
            progress=Progress(
                epoch=progress.get("epoch", 0),
                epochs=progress.get("epochs", 0),
                fraction=progress.get("fraction", 0.0),
                eta_seconds=progress.get("eta_seconds"),
            ),
            metrics=dict(data.get("metrics") or {}),
            best=Best(best["epoch"], best.get("monitor"), best.get("value")) if best else None,
            n_parameters=data.get("n_parameters", 0),
            attempt=data.get("attempt", 0),
            error=JobError(error.get("type", "Error"), error.get("message", "")) if error else None,
            created_at=_parse_time(data.get("created_at")),
            started_at=_parse_time(data.get("started_at")),
            finished_at=_parse_time(data.get("finished_at")),
            transitions=[
                Transition(
                    status=item["status"],
                    attempt=item["attempt"],
                    worker_id=item.get("worker_id"),
                    reason=item.get("reason"),
                    at=datetime.fromisoformat(item["at"]),
                )
                for item in data.get("transitions") or []
            ],
            raw=data,
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Prediction:
    """Model outputs, shape (n_samples, n_outputs), and one prediction per row.

    For classification the outputs are class probabilities and the predictions
    class labels; for regression both are the predicted values.
    """

    outputs: list[list[float | None]]
    predictions: list[Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prediction:
        return cls(outputs=data["outputs"], predictions=data["predictions"])


# Sweeps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One trial of a sweep: ``status`` is "pending" until its job exists."""

    index: int
    parameters: dict[str, Any]
    job_id: str | None
    status: str
    stop_reason: str | None
    stop_message: str | None
    epoch: int
    value: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        return cls(
            index=data["index"],
            parameters=dict(data["parameters"]),
            job_id=data.get("job_id"),
            status=data["status"],
            stop_reason=data.get("stop_reason"),
            stop_message=data.get("stop_message"),
            epoch=data.get("epoch", 0),
            value=data.get("value"),
        )


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int
    index: int  # the trial's index
    job_id: str
    status: str
    value: float
    epoch: int
    parameters: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LeaderboardEntry:
        return cls(
            rank=data["rank"],
            index=data["index"],
            job_id=data["job_id"],
            status=data["status"],
            value=data["value"],
            epoch=data["epoch"],
            parameters=dict(data["parameters"]),
        )


@dataclass(frozen=True)
class Sweep:
    """A sweep; ``leaderboard`` and ``trials`` are empty in lists."""

    id: str
    name: str | None
    experiment: str
    status: str
    method: str
    objective: dict[str, str]
    max_parallel: int
    n_trials: int
    seed: int | None
    early_stopping: dict[str, Any] | None
    counts: dict[str, int]
    stop_message: str | None
    created_at: datetime | None
    finished_at: datetime | None
    leaderboard: list[LeaderboardEntry]
    trials: list[Trial]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        return cls(
            id=data["id"],
            name=data.get("name"),
            experiment=data["experiment"],
            status=data["status"],
            method=data["method"],
            objective=dict(data["objective"]),
            max_parallel=data["max_parallel"],
            n_trials=data["n_trials"],
            seed=data.get("seed"),
            early_stopping=data.get("early_stopping"),
            counts=dict(data.get("counts") or {}),
            stop_message=data.get("stop_message"),
            created_at=_parse_time(data.get("created_at")),
            finished_at=_parse_time(data.get("finished_at")),
            leaderboard=[LeaderboardEntry.from_json(item) for item in data.get("leaderboard", [])],
            trials=[Trial.from_json(item) for item in data.get("trials", [])],
            raw=data,
        )

    @property
    def finished(self) -> bool:
        return self.status in SWEEP_TERMINAL_STATUSES

    @property
    def best(self) -> LeaderboardEntry | None:
        """The leaderboard's first entry, or None while no trial has a value."""
        return self.leaderboard[0] if self.leaderboard else None


# Experiments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentBest:
    job_id: str
    name: str | None
    monitor: str
    value: float
    epoch: int | None


@dataclass(frozen=True)
class Experiment:
    name: str
    n_jobs: int
    counts: dict[str, int]  # jobs by status
    best: ExperimentBest | None
    last_created_at: datetime | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Experiment:
        best = data.get("best")
        return cls(
            name=data["name"],
            n_jobs=data["n_jobs"],
            counts=dict(data["counts"]),
            best=ExperimentBest(**best) if best else None,
            last_created_at=_parse_time(data.get("last_created_at")),
            raw=data,
        )
