"""The job spec: one pydantic schema for the engine, the API, the CLI and the client.

A spec that validates trains. Every part rejects unknown fields, and every
impossible value is rejected with a message that names the field and the rule.
Wherever an object with a ``type`` is allowed, a bare string means that type with
its defaults (``"loss": "cross_entropy"``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "ActivationName",
    "Dense",
    "Dropout",
    "EarlyStopping",
    "Init",
    "JobSpec",
    "JsonBool",
    "JsonFloat",
    "JsonInt",
    "LayerSpec",
    "LossSpec",
    "ModelSpec",
    "OptimizerSpec",
    "Preprocessing",
    "ScheduleSpec",
    "Training",
    "ValidationError",
    "parse_spec",
]

ActivationName = Literal[
    "linear", "relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "softplus"
]
Task = Literal["classification", "regression"]
DType = Literal["float32", "float64"]

MAX_UNITS = 65_536
MAX_LAYERS = 64
# The engine's own bound. The service sets a lower one (max_history_points).
MAX_EPOCHS = 1_000_000


def _whole_number(value: Any) -> Any:
    """Return an integer unchanged, and a float with no fractional part as that integer.

    JSON has one number type, so ``10.0`` is the integer 10, as in JSON Schema.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Spec fields take JSON's own types only. Pydantic's lax mode would also turn true
# into 1 and "16" into 16, which hides a client's mistake.
JsonInt = Annotated[int, BeforeValidator(_whole_number)]
JsonFloat = Annotated[float, Strict()]  # an integer is a number too, so 2 gives 2.0
JsonBool = Annotated[bool, Strict()]


class _Strict(BaseModel):
    """Base for every spec part: unknown fields, NaN and infinity are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _type_shorthand(value: Any, default_type: str | None = None) -> Any:
    """Turn ``"adam"`` into ``{"type": "adam"}``: a bare string selects a type with its defaults.

    With ``default_type``, an object without ``type`` takes that type, so
    ``{"lr": 0.1}`` for an optimizer that defaults to adam is ``{"type": "adam", "lr": 0.1}``.
    """
    if isinstance(value, str):
        return {"type": value}
    if default_type is not None and isinstance(value, dict) and "type" not in value:
        return {**value, "type": default_type}
    return value


# Initializers ---------------------------------------------------------------


class ZerosInit(_Strict):
    type: Literal["zeros"]


class ConstantInit(_Strict):
    type: Literal["constant"]
    value: JsonFloat = 0.0


class NormalInit(_Strict):
    type: Literal["normal"]
    mean: JsonFloat = 0.0
    std: JsonFloat = Field(0.05, gt=0)


class UniformInit(_Strict):
    type: Literal["uniform"]
    low: JsonFloat = -0.05
    high: JsonFloat = 0.05

    @model_validator(mode="after")
    def _check_bounds(self) -> UniformInit:
        if self.low >= self.high:
            raise ValueError(f"low must be less than high, got low={self.low} and high={self.high}")
        return self


class ScaledInit(_Strict):
    """Glorot (Xavier) and He (Kaiming) initializers, scaled by fan-in and fan-out."""

    type: Literal["glorot_normal", "glorot_uniform", "he_normal", "he_uniform"]


Init = Annotated[
    ZerosInit | ConstantInit | NormalInit | UniformInit | ScaledInit,
    Field(discriminator="type"),
]


# Layers ---------------------------------------------------------------------


class ActivationSpec(_Strict):
    """An activation with its parameter: ``negative_slope`` for leaky_relu, ``alpha`` for elu."""

    type: ActivationName
    negative_slope: JsonFloat = Field(0.01, ge=0, le=1)
    alpha: JsonFloat = Field(1.0, gt=0, le=100)


class Dense(_Strict):
    """A fully connected layer: ``y = activation(x @ weight + bias)``."""

    type: Literal["dense"]
    units: JsonInt = Field(gt=0, le=MAX_UNITS)
    activation: ActivationSpec = ActivationSpec(type="linear")
    bias: JsonBool = True
    init: Init | None = Field(
        None,
        description="Weight initializer. Default: he_uniform after relu-like activations, "
        "glorot_uniform otherwise.",
    )
    bias_init: Init = ZerosInit(type="zeros")

    _shorthand = field_validator("activation", "init", "bias_init", mode="before")(
        lambda cls, value: _type_shorthand(value)
    )


class Dropout(_Strict):
    """Inverted dropout: during training each value is zeroed with probability ``rate``."""

    type: Literal["dropout"]
    rate: JsonFloat = Field(ge=0, lt=1)


LayerSpec = Annotated[Dense | Dropout, Field(discriminator="type")]


class ModelSpec(_Strict):
    layers: list[LayerSpec] = Field(min_length=1, max_length=MAX_LAYERS)

    @field_validator("layers", mode="before")
    @classmethod
    def _check_layer_types(cls, layers: Any) -> Any:
        if isinstance(layers, list):
            for index, layer in enumerate(layers):
                if isinstance(layer, dict) and layer.get("type") not in ("dense", "dropout"):
                    raise ValueError(
                        f"layers[{index}].type must be 'dense' or 'dropout', "
                        f"got {layer.get('type')!r}"
                    )
        return layers

    @model_validator(mode="after")
    def _check_dense_last(self) -> ModelSpec:
        if not isinstance(self.layers[-1], Dense):
            raise ValueError(
                "the last layer must be dense, because its units are the model's outputs"
            )
        return self


# Loss -----------------------------------------------------------------------


class LossSpec(_Strict):
    """The training loss. ``huber`` uses ``delta``; the cross-entropies take logits."""

    type: Literal[
        "squared_error", "absolute_error", "huber", "binary_cross_entropy", "cross_entropy"
    ]
    reduction: Literal["mean", "sum"] = "mean"
    delta: JsonFloat = Field(1.0, gt=0)

    @property
    def task(self) -> Task:
        if self.type in ("binary_cross_entropy", "cross_entropy"):
            return "classification"
        return "regression"


# Optimizer ------------------------------------------------------------------


class _OptimizerBase(_Strict):
    lr: JsonFloat = Field(0.001, gt=0, le=10)
    weight_decay: JsonFloat = Field(0.0, ge=0, le=1)
    clip_grad_norm: JsonFloat | None = Field(
        None, gt=0, description="Rescale the gradient when its global L2 norm exceeds this."
    )


class SGD(_OptimizerBase):
    type: Literal["sgd"]
    lr: JsonFloat = Field(0.01, gt=0, le=10)
    momentum: JsonFloat = Field(0.0, ge=0, lt=1)
    nesterov: JsonBool = False

    @model_validator(mode="after")
    def _check_nesterov(self) -> SGD:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov requires momentum > 0, got momentum=0")
        return self


class Adam(_OptimizerBase):
    type: Literal["adam", "adamw"]
    betas: tuple[JsonFloat, JsonFloat] = (0.9, 0.999)
    eps: JsonFloat = Field(1e-8, gt=0, le=1)

    @field_validator("betas")
    @classmethod
    def _check_betas(cls, betas: tuple[float, float]) -> tuple[float, float]:
        for index, beta in enumerate(betas):
            if not 0 <= beta < 1:
                raise ValueError(f"betas[{index}] must be in [0, 1), got {beta}")
        return betas

    @model_validator(mode="before")
    @classmethod
    def _adamw_default_decay(cls, data: Any) -> Any:
        # AdamW's decoupled decay defaults to 0.01, as in PyTorch; Adam's L2 decay to 0.
        if isinstance(data, dict) and data.get("type") == "adamw" and "weight_decay" not in data:
            return {**data, "weight_decay": 0.01}
        return data


class RMSprop(_OptimizerBase):
    type: Literal["rmsprop"]
    lr: JsonFloat = Field(0.01, gt=0, le=10)
    alpha: JsonFloat = Field(0.99, ge=0, lt=1)
    eps: JsonFloat = Field(1e-8, gt=0, le=1)
    momentum: JsonFloat = Field(0.0, ge=0, lt=1)


class Adagrad(_OptimizerBase):
    type: Literal["adagrad"]
    lr: JsonFloat = Field(0.01, gt=0, le=10)
    eps: JsonFloat = Field(1e-10, gt=0, le=1)
    initial_accumulator_value: JsonFloat = Field(0.0, ge=0)


OptimizerSpec = Annotated[SGD | Adam | RMSprop | Adagrad, Field(discriminator="type")]


# Schedule -------------------------------------------------------------------


class _ScheduleBase(_Strict):
    warmup_epochs: JsonInt = Field(
        0, ge=0, le=MAX_EPOCHS, description="Epochs of linear warmup before the schedule starts."
    )


class ConstantSchedule(_ScheduleBase):
    type: Literal["constant"]


class StepSchedule(_ScheduleBase):
    type: Literal["step"]
    step_size: JsonInt = Field(10, gt=0, le=MAX_EPOCHS)
    gamma: JsonFloat = Field(0.1, gt=0, le=1)


class ExponentialSchedule(_ScheduleBase):
    type: Literal["exponential"]
    gamma: JsonFloat = Field(0.95, gt=0, le=1)


class CosineSchedule(_ScheduleBase):
    type: Literal["cosine"]
    t_max: JsonInt | None = Field(
        None, gt=0, le=MAX_EPOCHS, description="Epochs of one half cosine; default: the rest."
    )
    eta_min: JsonFloat = Field(0.0, ge=0)


ScheduleSpec = Annotated[
    ConstantSchedule | StepSchedule | ExponentialSchedule | CosineSchedule,
    Field(discriminator="type"),
]


# Training -------------------------------------------------------------------

Monitor = str


class EarlyStopping(_Strict):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs."""

    monitor: Monitor = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: JsonInt = Field(10, ge=1, le=MAX_EPOCHS)
    min_delta: JsonFloat = Field(0.0, ge=0)
    restore_best: JsonBool = True

    @field_validator("monitor")
    @classmethod
    def _check_monitor(cls, monitor: str) -> str:
        prefix, _, metric = monitor.partition("_")
        if prefix not in ("train", "val") or metric not in ("loss", "accuracy", "r2", "mae"):
            raise ValueError(
                "monitor must be train_ or val_ followed by loss, accuracy, r2 or mae, "
                f"got {monitor!r}"
            )
        return monitor

    @property
    def direction(self) -> Literal["min", "max"]:
        if self.mode != "auto":
            return self.mode
        return "max" if self.monitor.endswith(("accuracy", "r2")) else "min"


class Training(_Strict):
    epochs: JsonInt = Field(10, ge=1, le=MAX_EPOCHS)
    batch_size: JsonInt = Field(32, ge=1, le=1_000_000)
    shuffle: JsonBool = True
    seed: JsonInt = Field(0, ge=0, le=2**63 - 1)
    validation_split: JsonFloat = Field(0.0, ge=0, lt=1)
    stratify: JsonBool = Field(
        True, description="Keep class proportions in the validation split (classification)."
    )
    early_stopping: EarlyStopping | None = None
    dtype: DType = "float32"
    max_seconds: JsonFloat | None = Field(
        None, gt=0, description="Stop with stop_reason time_limit after this much training time."
    )

    @model_validator(mode="after")
    def _check_monitor_has_data(self) -> Training:
        stopping = self.early_stopping
        if stopping and stopping.monitor.startswith("val_") and self.validation_split == 0:
            raise ValueError(
                f"early_stopping.monitor is {stopping.monitor!r} but validation_split is 0; "
                "set validation_split above 0 or monitor a train_ value"
            )
        return self


class Preprocessing(_Strict):
    standardize: JsonBool = Field(
        False, description="Scale features to zero mean and unit variance (training split only)."
    )
    impute: Literal["none", "mean", "median"] = Field(
        "none",
        description="Fill missing feature values with the training split's mean or median; "
        "'none' rejects data with missing values.",
    )


# The job spec ---------------------------------------------------------------


class JobSpec(_Strict):
    """Everything needed to train one model on one dataset."""

    name: str | None = Field(None, max_length=200)
    experiment: str = Field("default", min_length=1, max_length=200)
    tags: dict[str, str] = Field(default_factory=dict)
    dataset: str = Field(min_length=1, max_length=200)
    task: Task | None = Field(
        None, description="Override the task inferred from the loss or the dataset."
    )
    model: ModelSpec
    loss: LossSpec | None = Field(
        None, description="Default: cross_entropy for classification, squared_error otherwise."
    )
    optimizer: OptimizerSpec = Field(
        Adam(type="adam"), description="Default: adam. An object without type is adam."
    )
    schedule: ScheduleSpec = Field(
        ConstantSchedule(type="constant"),
        description="Default: constant. An object without type is constant.",
    )
    training: Training = Training()
    preprocessing: Preprocessing = Preprocessing()

    @field_validator("loss", "optimizer", "schedule", mode="before")
    @classmethod
    def _shorthand(cls, value: Any, info: ValidationInfo) -> Any:
        # An object without type takes the type of the field's default. Loss has no default.
        default = cls.model_fields[str(info.field_name)].default
        return _type_shorthand(value, getattr(default, "type", None))

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        if len(tags) > 50:
            raise ValueError(f"at most 50 tags are allowed, got {len(tags)}")
        for key, value in tags.items():
            if not key or len(key) > 100 or len(value) > 500:
                raise ValueError(
                    f"tag {key!r} must have a key of 1 to 100 characters and a value of at most 500"
                )
            if ":" in key:
                raise ValueError(f"tag key {key!r} must not contain ':'")
        return tags

    @model_validator(mode="after")
    def _check_loss_matches_task(self) -> JobSpec:
        if self.loss is not None and self.task is not None and self.loss.task != self.task:
            raise ValueError(
                f"loss {self.loss.type!r} is for {self.loss.task}, but task is {self.task!r}"
            )
        return self

    @model_validator(mode="after")
    def _check_warmup_fits(self) -> JobSpec:
        warmup, epochs = self.schedule.warmup_epochs, self.training.epochs
        if warmup > epochs:
            raise ValueError(
                f"schedule.warmup_epochs is {warmup}, above training.epochs ({epochs}), so the "
                "learning rate would never reach lr; use at most as many warmup epochs as epochs"
            )
        return self

    def resolved_task(self, dataset_task: Task) -> Task:
        """Return the task: the spec's ``task``, else the loss's, else the dataset's."""
        if self.task is not None:
            return self.task
        if self.loss is not None:
            return self.loss.task
        return dataset_task

    def resolved_loss(self, task: Task) -> LossSpec:
        """Return the loss, defaulting to cross_entropy or squared_error by task."""
        if self.loss is not None:
            return self.loss
        return LossSpec(type="cross_entropy" if task == "classification" else "squared_error")


def parse_spec(data: JobSpec | dict[str, Any]) -> JobSpec:
    """Validate a spec given as a dict (or pass a JobSpec through).

    Raises:
        pydantic.ValidationError: with one entry per invalid field.
    """
    if isinstance(data, JobSpec):
        return data
    return JobSpec.model_validate(data)
