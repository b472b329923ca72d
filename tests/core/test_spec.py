import copy
import math
from typing import Any

import numpy as np
import pytest

import core
from core.spec import SGD, Adam, CosineSchedule, JobSpec, LossSpec, ValidationError, parse_spec
from tests.core.helpers import blobs

BASE: dict[str, Any] = {
    "dataset": "builtin:iris",
    "model": {"layers": [{"type": "dense", "units": 3}]},
}


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    spec.update(copy.deepcopy(changes))
    return spec


def single_error(spec: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        parse_spec(spec)
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return dict(errors[0], text=str(caught.value))


def test_parse_spec_minimal_defaults():
    """A spec with only dataset and model fills every other part with its default."""
    spec = parse_spec(BASE)

    assert spec.loss is None
    assert spec.optimizer == Adam(type="adam")
    assert spec.training.dtype == "float32"
    assert spec.training.epochs == 10
    assert spec.preprocessing.standardize is False


def test_parse_spec_string_shorthand():
    """A bare string where an object is allowed means that type with its defaults."""
    spec = parse_spec(spec_with(loss="cross_entropy", optimizer="adam", schedule="cosine"))

    assert spec.loss == LossSpec(type="cross_entropy")
    assert spec.optimizer == Adam(type="adam")
    assert spec.schedule == CosineSchedule(type="cosine")


def test_parse_spec_activation_and_init_shorthand():
    """Strings for a layer's activation and init select those types with defaults."""
    layers = [{"type": "dense", "units": 3, "activation": "elu", "init": "he_normal"}]

    spec = parse_spec(spec_with(model={"layers": layers}))

    dense = spec.model.layers[0]
    assert dense.activation.type == "elu"
    assert dense.activation.alpha == 1.0
    assert dense.init is not None and dense.init.type == "he_normal"


def test_parse_spec_passes_jobspec_through():
    """parse_spec returns a JobSpec it is given unchanged."""
    spec = parse_spec(BASE)

    assert parse_spec(spec) is spec


def test_adamw_default_weight_decay():
    """adamw defaults to weight_decay 0.01 as in PyTorch, and adam to 0."""
    assert parse_spec(spec_with(optimizer="adamw")).optimizer.weight_decay == 0.01
    assert parse_spec(spec_with(optimizer="adam")).optimizer.weight_decay == 0.0


def test_spec_unknown_top_level_field():
    """An unknown top-level field is rejected under its own name."""
    error = single_error(spec_with(colour="red"))

    assert error["loc"] == ("colour",)
    assert "colour" in error["text"]


def test_spec_unknown_nested_field():
    """An unknown field inside a layer is rejected with the path to it."""
    spec = spec_with(model={"layers": [{"type": "dense", "units": 3, "unitz": 4}]})

    error = single_error(spec)

    assert error["loc"][:3] == ("model", "layers", 0)
    assert error["loc"][-1] == "unitz"
    assert "model.layers.0" in error["text"]


def test_spec_unknown_layer_type():
    """An unknown layer type is rejected with its index and the allowed types."""
    spec = spec_with(
        model={"layers": [{"type": "conv", "units": 3}, {"type": "dense", "units": 3}]}
    )

    error = single_error(spec)

    assert error["loc"] == ("model", "layers")
    assert "layers[0].type" in error["msg"]
    assert "'conv'" in error["msg"]
    assert "'dense'" in error["msg"]


@pytest.mark.parametrize("units", [-3, 0])
def test_spec_units_not_positive(units):
    """Zero or negative units are rejected at the layer's units field."""
    error = single_error(spec_with(model={"layers": [{"type": "dense", "units": units}]}))

    assert error["loc"][-1] == "units"
    assert "model.layers.0.dense.units" in error["text"]
    assert "greater than 0" in error["msg"]


@pytest.mark.parametrize("lr", [math.nan, math.inf])
def test_spec_lr_not_finite(lr):
    """A NaN or infinite lr is rejected at optimizer.lr."""
    error = single_error(spec_with(optimizer={"type": "sgd", "lr": lr}))

    assert error["loc"] == ("optimizer", "sgd", "lr")
    assert "finite" in error["msg"]


def test_spec_nesterov_without_momentum():
    """nesterov with momentum 0 is rejected with a message naming both fields."""
    error = single_error(spec_with(optimizer={"type": "sgd", "nesterov": True}))

    assert error["loc"] == ("optimizer", "sgd")
    assert "nesterov" in error["msg"]
    assert "momentum" in error["msg"]


def test_spec_nesterov_with_momentum_valid():
    """nesterov with momentum above 0 validates."""
    spec = parse_spec(spec_with(optimizer={"type": "sgd", "nesterov": True, "momentum": 0.9}))

    assert spec.optimizer == SGD(type="sgd", nesterov=True, momentum=0.9)


def test_spec_val_monitor_without_validation_split():
    """Early stopping on a val_ value without a validation split is rejected with the fix."""
    training = {"early_stopping": {"monitor": "val_loss"}}

    error = single_error(spec_with(training=training))

    assert error["loc"] == ("training",)
    assert "early_stopping.monitor" in error["msg"]
    assert "validation_split" in error["msg"]


def test_spec_train_monitor_without_validation_split_valid():
    """Early stopping on a train_ value needs no validation split."""
    training = {"early_stopping": {"monitor": "train_loss"}}

    spec = parse_spec(spec_with(training=training))

    assert spec.training.early_stopping is not None
    assert spec.training.early_stopping.direction == "min"


def test_spec_unknown_monitor():
    """A monitor that is not train_ or val_ followed by a known metric is rejected."""
    training = {"validation_split": 0.2, "early_stopping": {"monitor": "val_f1"}}

    error = single_error(spec_with(training=training))

    assert error["loc"] == ("training", "early_stopping", "monitor")
    assert "'val_f1'" in error["msg"]


def test_spec_last_layer_dropout():
    """A dropout layer last is rejected, because the last layer's units are the outputs."""
    layers = [{"type": "dense", "units": 3}, {"type": "dropout", "rate": 0.1}]

    error = single_error(spec_with(model={"layers": layers}))

    assert error["loc"] == ("model",)
    assert "last layer must be dense" in error["msg"]


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_spec_dropout_rate_out_of_range(rate):
    """A dropout rate outside [0, 1) is rejected at its rate field."""
    layers = [{"type": "dropout", "rate": rate}, {"type": "dense", "units": 3}]

    error = single_error(spec_with(model={"layers": layers}))

    assert error["loc"][-1] == "rate"


def test_spec_loss_contradicts_task():
    """A classification loss with task regression is rejected, naming both."""
    error = single_error(spec_with(loss="cross_entropy", task="regression"))

    assert "cross_entropy" in error["msg"]
    assert "regression" in error["msg"]


def test_spec_unknown_loss_string():
    """An unknown loss name in the string shorthand is rejected at loss.type."""
    error = single_error(spec_with(loss="hinge"))

    assert error["loc"] == ("loss", "type")


def test_spec_is_frozen():
    """A validated spec cannot be changed in place."""
    spec = parse_spec(BASE)

    with pytest.raises(ValidationError):
        spec.dataset = "builtin:wine"  # type: ignore[misc]


def test_spec_json_round_trip():
    """A spec dumped to JSON validates back to an equal spec."""
    spec = parse_spec(spec_with(loss="cross_entropy", optimizer="adamw", schedule="step"))

    again = JobSpec.model_validate_json(spec.model_dump_json())

    assert again == spec


def test_output_units_mismatch_names_the_fix():
    """Output units that differ from the number of classes raise ValueError naming the value."""
    x, y = blobs(n_classes=3)
    spec = spec_with(model={"layers": [{"type": "dense", "units": 2}]}, loss="cross_entropy")

    with pytest.raises(ValueError) as caught:
        core.fit(spec, x, y)

    message = str(caught.value)
    assert "model.layers[0].units" in message
    assert "set units to 3" in message


def test_binary_cross_entropy_needs_one_output():
    """binary_cross_entropy with two output units raises ValueError asking for 1."""
    x, y = blobs(n_classes=2)
    spec = spec_with(model={"layers": [{"type": "dense", "units": 2}]}, loss="binary_cross_entropy")

    with pytest.raises(ValueError, match="set units to 1"):
        core.fit(spec, x, y)


def test_infer_task_from_target_dtype():
    """Integer, boolean and text targets mean classification, and floats regression."""
    assert core.infer_task(np.array([0, 1, 2])) == "classification"
    assert core.infer_task(np.array([True, False])) == "classification"
    assert core.infer_task(np.array(["a", "b"])) == "classification"
    assert core.infer_task(np.array([0.5, 1.5])) == "regression"


def test_warmup_longer_than_training_rejected():
    """Warmup past the last epoch would keep the learning rate below lr for the whole run."""
    with pytest.raises(ValidationError, match=r"warmup_epochs is 61, above training.epochs \(60\)"):
        parse_spec(
            spec_with(schedule={"type": "cosine", "warmup_epochs": 61}, training={"epochs": 60})
        )


def test_warmup_as_long_as_training_accepted():
    """A warmup over the whole run is a linear ramp, which is allowed."""
    spec = parse_spec(
        spec_with(schedule={"type": "cosine", "warmup_epochs": 60}, training={"epochs": 60})
    )
    assert spec.schedule.warmup_epochs == 60


def test_optimizer_object_without_type_is_adam():
    """The optimizer defaults to adam, so an object without type sets adam's fields."""
    spec = parse_spec(spec_with(optimizer={"lr": 0.05}))

    assert isinstance(spec.optimizer, Adam)
    assert spec.optimizer.type == "adam"
    assert spec.optimizer.lr == 0.05


def test_optimizer_without_type_reports_field_error():
    """A bad field of a typeless optimizer is reported, not the missing type."""
    error = single_error(spec_with(optimizer={"lr": -1}))

    assert error["loc"] == ("optimizer", "adam", "lr")
    assert error["type"] == "greater_than"


def test_typeless_optimizer_rejects_sgd_fields():
    """Momentum is an sgd field, so a typeless optimizer (adam) rejects it."""
    error = single_error(spec_with(optimizer={"momentum": 0.9}))

    assert error["loc"] == ("optimizer", "adam", "momentum")
    assert error["type"] == "extra_forbidden"


def test_schedule_object_without_type_is_constant():
    spec = parse_spec(spec_with(schedule={"warmup_epochs": 2}))

    assert spec.schedule.type == "constant"
    assert spec.schedule.warmup_epochs == 2


def test_loss_object_without_type_rejected():
    """The loss has no default type (it follows the task), so its type stays required."""
    error = single_error(spec_with(loss={"reduction": "sum"}))

    assert error["loc"] == ("loss", "type")
    assert error["type"] == "missing"
