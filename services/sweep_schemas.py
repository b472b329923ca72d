"""Request and response bodies of the sweep and experiment endpoints.

A sweep runs one base job spec over a grid or a random sample of hyperparameters.
Parameters are addressed by dotted paths into the spec (``optimizer.lr``,
``model.layers.0.units``), and each combination of values is a trial that becomes
one job.
"""

from __future__ import annotations

import copy
import math
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.spec import JobSpec, JsonFloat, JsonInt
from services.schemas import JobStatus, StopReason

__all__ = [
    "MAX_PARAMETERS",
    "AshaRule",
    "ChoiceParameter",
    "ExperimentBest",
    "ExperimentList",
    "ExperimentPublic",
    "IntUniformParameter",
    "LeaderboardEntry",
    "MedianRule",
    "Objective",
    "ParameterSpec",
    "SweepCreate",
    "SweepDetail",
    "SweepList",
    "SweepPublic",
    "SweepStatus",
    "TrialPublic",
    "TrialStatus",
    "UniformParameter",
    "natural_mode",
]

SweepStatus = Literal["running", "succeeded", "failed", "cancelled"]
# A trial is "pending" until its job exists, and "deleted" when its job was deleted.
TrialStatus = Literal["pending", "queued", "running", "succeeded", "failed", "cancelled", "deleted"]
SWEEP_STATUSES: tuple[str, ...] = ("running", "succeeded", "failed", "cancelled")

MAX_PARAMETERS = 32
MAX_VALUES = 1000
MAX_TRIALS_LIMIT = 100_000
PARAMETER_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def natural_mode(metric: str) -> Literal["min", "max"]:
    """Return the direction in which ``metric`` improves: max for accuracy and r2, else min."""
    return "max" if metric.endswith(("accuracy", "r2")) else "min"


# Parameters ------------------------------------------------------------------------


class ChoiceParameter(_Strict):
    """One of a list of values; the only kind a grid accepts. ``distribution`` may be left out."""

    distribution: Literal["choice"] = "choice"
    values: list[JsonValue] = Field(min_length=1, max_length=MAX_VALUES)


class UniformParameter(_Strict):
    """A float drawn uniformly from [min, max], or with log_uniform, uniformly in log space."""

    distribution: Literal["uniform", "log_uniform"]
    min: JsonFloat
    max: JsonFloat

    @model_validator(mode="after")
    def _check_range(self) -> UniformParameter:
        if not self.min < self.max:
            raise ValueError(f"min must be below max, got min={self.min} and max={self.max}")
        if self.distribution == "log_uniform" and self.min <= 0:
            raise ValueError(f"log_uniform needs min > 0, got min={self.min}")
        return self


class IntUniformParameter(_Strict):
    """An integer drawn uniformly from min to max, both included."""

    distribution: Literal["int_uniform"]
    min: JsonInt
    max: JsonInt

    @model_validator(mode="after")
    def _check_range(self) -> IntUniformParameter:
        if self.min > self.max:
            raise ValueError(f"min must be at most max, got min={self.min} and max={self.max}")
        return self


RANGE_DISTRIBUTIONS: tuple[str, ...] = (
    *get_args(UniformParameter.model_fields["distribution"].annotation),
    *get_args(IntUniformParameter.model_fields["distribution"].annotation),
)


def _fill_choice_distribution(value: Any) -> Any:
    """Give a parameter object that has ``values`` but no ``distribution`` the choice one.

    An object with neither, or a value that is no object, fits no kind of parameter, so
    the error lists the keys a parameter takes instead of one member's missing fields.
    """
    if isinstance(value, BaseModel) or (isinstance(value, dict) and "distribution" in value):
        return value
    if isinstance(value, dict) and "values" in value:
        return {**value, "distribution": "choice"}
    raise PydanticCustomError(
        "parameter_keys",
        "a parameter is an object with values (a list to choose from) or with distribution "
        "({distributions}), min and max",
        {"distributions": ", ".join(repr(name) for name in RANGE_DISTRIBUTIONS)},
    )


ParameterSpec = Annotated[
    ChoiceParameter | UniformParameter | IntUniformParameter,
    Field(discriminator="distribution"),
    BeforeValidator(_fill_choice_distribution),
]


# Objective and early stopping --------------------------------------------------------


class Objective(_Strict):
    """The metric that ranks trials, and whether lower or higher is better."""

    metric: str = Field(description="train_ or val_ followed by loss, accuracy, r2 or mae.")
    mode: Literal["min", "max"] | None = Field(
        None, description="Default: max for accuracy and r2, min otherwise."
    )

    @field_validator("metric")
    @classmethod
    def _check_metric(cls, metric: str) -> str:
        prefix, _, name = metric.partition("_")
        if prefix not in ("train", "val") or name not in ("loss", "accuracy", "r2", "mae"):
            raise ValueError(
                "metric must be train_ or val_ followed by loss, accuracy, r2 or mae, "
                f"got {metric!r}"
            )
        return metric

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        return self.mode or natural_mode(self.metric)


class MedianRule(_Strict):
    """The median stopping rule (Golovin et al., "Google Vizier", KDD 2017).

    A running trial past ``grace_epochs`` is stopped when its best objective value up
    to its current epoch t is worse than the median of the other trials' running
    averages of the objective up to epoch t. Only trials that have reached epoch t
    count, and at least ``min_trials`` of them must exist.
    """

    rule: Literal["median"]
    grace_epochs: JsonInt = Field(5, ge=0, le=100_000, description="Epochs never judged.")
    min_trials: JsonInt = Field(3, ge=1, le=1000, description="Other trials needed at epoch t.")


class AshaRule(_Strict):
    """Asynchronous successive halving (Li et al., "A System for Massively Parallel
    Hyperparameter Tuning", MLSys 2020), in its stopping form.

    Rungs sit at ``grace_epochs * reduction_factor**k`` epochs. A trial that reaches a
    rung is stopped unless its best objective value so far is in the top
    ``1 / reduction_factor`` of the values that the trials reaching that rung had
    there. At least ``min_trials`` other trials must have reached the rung.
    """

    rule: Literal["asha"]
    grace_epochs: JsonInt = Field(1, ge=1, le=100_000, description="The first rung, in epochs.")
    reduction_factor: JsonInt = Field(3, ge=2, le=100)
    min_trials: JsonInt = Field(2, ge=1, le=1000, description="Other trials needed at a rung.")


EarlyStoppingRule = Annotated[MedianRule | AshaRule, Field(discriminator="rule")]


# Creating a sweep --------------------------------------------------------------------


class SweepCreate(_Strict):
    """A sweep request: a base spec, the parameters to vary, and how to rank the trials."""

    name: str | None = Field(None, max_length=200)
    experiment: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="The trials' experiment. Default: the base spec's experiment.",
    )
    base: JobSpec = Field(description="The job spec every trial starts from.")
    method: Literal["grid", "random"] = "grid"
    parameters: dict[
        Annotated[str, Field(pattern=PARAMETER_PATH, max_length=300)], ParameterSpec
    ] = Field(
        min_length=1,
        max_length=MAX_PARAMETERS,
        description="Dotted paths into the spec, such as optimizer.lr or model.layers.0.units, "
        "each with values (grid and random) or a distribution (random only): uniform, "
        "log_uniform or int_uniform with min and max.",
    )
    n_trials: JsonInt | None = Field(
        None, ge=1, le=MAX_TRIALS_LIMIT, description="random only: how many trials to draw."
    )
    seed: JsonInt | None = Field(
        None,
        ge=0,
        le=2**63 - 1,
        description="random only: the same seed draws the same trials. Default: drawn at random "
        "and returned with the sweep.",
    )
    objective: Objective = Objective(metric="val_loss")
    max_parallel: JsonInt = Field(4, ge=1, le=1000, description="Most trials queued or running.")
    early_stopping: EarlyStoppingRule | None = None

    _raw_base: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw_base(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Keep the base spec as sent, so trials change only the fields their parameters name."""
        sweep = handler(data)
        if isinstance(data, dict) and isinstance(data.get("base"), dict):
            sweep._raw_base = copy.deepcopy(data["base"])
        elif isinstance(sweep, SweepCreate) and not sweep._raw_base:
            sweep._raw_base = sweep.base.model_dump(mode="json", exclude_unset=True)
        return sweep

    @model_validator(mode="after")
    def _check_method(self) -> SweepCreate:
        if self.method == "grid":
            if self.n_trials is not None:
                raise ValueError(
                    "n_trials is for method random; a grid runs every combination of values"
                )
            for path, parameter in self.parameters.items():
                if not isinstance(parameter, ChoiceParameter):
                    raise ValueError(
                        f"parameters.{path}: a grid needs a list of values, got distribution "
                        f"{parameter.distribution!r}; use method random or give values"
                    )
        elif self.n_trials is None:
            raise ValueError("method random needs n_trials, the number of trials to draw")
        return self

    @property
    def raw_base(self) -> dict[str, Any]:
        """The base spec as the client sent it, before defaults were filled in."""
        return copy.deepcopy(self._raw_base)


# Reading sweeps ----------------------------------------------------------------------


class TrialPublic(BaseModel):
    index: int = Field(description="The trial's position, from 0, in the order it was made.")
    parameters: dict[str, Any]
    job_id: str | None = Field(description="null until the trial has started.")
    status: TrialStatus
    stop_reason: StopReason | None
    stop_message: str | None
    epoch: int = Field(description="Epochs completed.")
    value: float | None = Field(description="The objective value; see LeaderboardEntry.")


class LeaderboardEntry(BaseModel):
    rank: int = Field(description="1 for the best trial.")
    index: int
    job_id: str
    status: JobStatus
    value: float = Field(
        description="The objective value: the trial's best epoch's value when the trial "
        "monitors the objective metric in the objective's direction (the job's best), "
        "otherwise the value at its latest epoch."
    )
    epoch: int = Field(description="The epoch of the value.")
    parameters: dict[str, Any]


class SweepPublic(BaseModel):
    """A sweep as lists show it, with its trial counts but not its trials."""

    id: str
    name: str | None
    experiment: str
    status: SweepStatus
    method: Literal["grid", "random"]
    objective: Objective
    max_parallel: int
    n_trials: int
    seed: int | None
    early_stopping: MedianRule | AshaRule | None
    counts: dict[str, int] = Field(description="Trials by status, including pending.")
    stop_message: str | None
    created_at: datetime
    finished_at: datetime | None


class SweepDetail(SweepPublic):
    """A sweep with its definition, its leaderboard and every trial."""

    base: dict[str, Any]
    parameters: dict[str, Any]
    leaderboard: list[LeaderboardEntry] = Field(
        description="Running, succeeded and cancelled trials that have an objective value, "
        "best first; ties keep the trial order. Failed trials are left out."
    )
    trials: list[TrialPublic]


class SweepList(BaseModel):
    items: list[SweepPublic]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


# Experiments -------------------------------------------------------------------------


class ExperimentBest(BaseModel):
    job_id: str
    name: str | None
    monitor: str
    value: float
    epoch: int | None


class ExperimentPublic(BaseModel):
    name: str
    n_jobs: int
    counts: dict[str, int] = Field(description="Jobs by status.")
    best: ExperimentBest | None = Field(
        description="The succeeded job with the best monitored value, among the jobs that "
        "monitor the experiment's most common monitor (ties: the name that sorts first). "
        "Lower is better for losses and mae, higher for accuracy and r2."
    )
    last_created_at: datetime


class ExperimentList(BaseModel):
    items: list[ExperimentPublic]
    next_cursor: str | None


def finite(value: float | None) -> float | None:
    """Return ``value`` if it is a finite float, else None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
