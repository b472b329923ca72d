"""422 responses name the client's own field, the value and the rule, one sentence per error.

Pydantic's union tags (``choice``, ``adam``), member labels and the errors of union
members that did not apply must not reach the client.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.services.api.conftest import TEA_SPEC, assert_problem


def job_errors(client: TestClient, **changes: Any) -> list[dict[str, Any]]:
    """POST the tea spec with ``changes`` and return the 422's errors."""
    response = client.post("/v1/jobs", json={**TEA_SPEC, **changes})
    errors: list[dict[str, Any]] = assert_problem(response, 422)["errors"]
    return errors


def sweep_errors(
    client: TestClient, parameters: dict[str, Any], **changes: Any
) -> list[dict[str, Any]]:
    """POST a sweep over the tea spec with ``parameters`` and return the 422's errors."""
    body = {"base": TEA_SPEC, "parameters": parameters, **changes}
    errors: list[dict[str, Any]] = assert_problem(client.post("/v1/sweeps", json=body), 422)[
        "errors"
    ]
    return errors


def predict_errors(client: TestClient, body: str) -> list[dict[str, Any]]:
    """POST ``body`` as JSON text (so it may contain NaN) to predict and return the 422's errors."""
    response = client.post(
        "/v1/jobs/unknown/predict", content=body, headers={"Content-Type": "application/json"}
    )
    errors: list[dict[str, Any]] = assert_problem(response, 422)["errors"]
    return errors


# Sweep parameters ---------------------------------------------------------------------


def test_sweep_empty_values_located_at_values(client: TestClient) -> None:
    errors = sweep_errors(client, {"optimizer.lr": {"values": []}})

    assert [error["loc"] for error in errors] == [["body", "parameters", "optimizer.lr", "values"]]
    assert errors[0]["msg"] == "parameters.optimizer.lr.values: needs at least 1 value, got none"


def test_sweep_range_without_distribution_lists_keys(client: TestClient) -> None:
    errors = sweep_errors(
        client, {"optimizer.lr": {"min": 0.001, "max": 0.1}}, method="random", n_trials=3
    )

    assert [error["loc"] for error in errors] == [["body", "parameters", "optimizer.lr"]]
    message = errors[0]["msg"]
    assert message.startswith("parameters.optimizer.lr: a parameter is an object with values")
    assert "distribution ('uniform', 'log_uniform', 'int_uniform'), min and max" in message
    assert "{'min': 0.001, 'max': 0.1}" in message
    assert "choice" not in message


def test_sweep_parameter_not_object_lists_keys(client: TestClient) -> None:
    errors = sweep_errors(client, {"optimizer.lr": [0.1, 0.01]})

    assert [error["loc"] for error in errors] == [["body", "parameters", "optimizer.lr"]]
    assert "a parameter is an object with values" in errors[0]["msg"]
    assert "got [0.1, 0.01]" in errors[0]["msg"]


def test_sweep_range_field_error_has_no_tag(client: TestClient) -> None:
    parameter = {"distribution": "uniform", "min": "low", "max": 1}
    errors = sweep_errors(client, {"optimizer.lr": parameter}, method="random", n_trials=3)

    assert [error["loc"] for error in errors] == [["body", "parameters", "optimizer.lr", "min"]]
    assert errors[0]["msg"].startswith("parameters.optimizer.lr.min: Input should be a valid")


def test_sweep_unknown_distribution_lists_known(client: TestClient) -> None:
    parameter = {"distribution": "normal", "min": 0, "max": 1}
    errors = sweep_errors(client, {"optimizer.lr": parameter}, method="random", n_trials=3)

    assert [error["loc"] for error in errors] == [
        ["body", "parameters", "optimizer.lr", "distribution"]
    ]
    assert errors[0]["msg"] == (
        "parameters.optimizer.lr.distribution: unknown distribution 'normal'; "
        "expected one of 'choice', 'uniform', 'log_uniform', 'int_uniform'"
    )


def test_sweep_values_without_distribution_accepted(client: TestClient) -> None:
    body = {
        "base": TEA_SPEC,
        "parameters": {"optimizer.lr": {"values": [0.1, 0.01]}},
        "objective": {"metric": "train_loss"},
    }

    response = client.post("/v1/sweeps", json=body)

    assert response.status_code == 202, response.text


def test_sweep_unknown_early_stopping_rule(client: TestClient) -> None:
    errors = sweep_errors(
        client, {"optimizer.lr": {"values": [0.1]}}, early_stopping={"rule": "hyperband"}
    )

    assert [error["loc"] for error in errors] == [["body", "early_stopping", "rule"]]
    assert errors[0]["msg"] == (
        "early_stopping.rule: unknown rule 'hyperband'; expected one of 'median', 'asha'"
    )


# Predict rows -------------------------------------------------------------------------


def test_predict_nan_in_list_row_one_error(client: TestClient) -> None:
    errors = predict_errors(client, '{"inputs": [[1, NaN, 3, 4]]}')

    assert [error["loc"] for error in errors] == [["body", "inputs", 0, 1]]
    assert errors[0]["msg"] == "inputs[0][1]: Input should be a finite number, got nan"


def test_predict_nan_in_object_row_one_error(client: TestClient) -> None:
    errors = predict_errors(client, '{"inputs": [{"sepal_length": NaN}]}')

    assert [error["loc"] for error in errors] == [["body", "inputs", 0, "sepal_length"]]
    assert "valid list" not in errors[0]["msg"]


def test_predict_flat_inputs_one_error_per_row(client: TestClient) -> None:
    errors = predict_errors(client, '{"inputs": [1, 2, 3, 4]}')

    assert [error["loc"] for error in errors] == [["body", "inputs", row] for row in range(4)]
    assert errors[0]["msg"] == (
        "inputs[0]: each row must be a list of values in column order or an object of "
        "column names to values, got 1"
    )
    assert all("each row must be" in error["msg"] for error in errors)


def test_predict_nested_value_names_both_kinds(client: TestClient) -> None:
    """A value that is neither a number nor a text gets one error naming both kinds."""
    errors = predict_errors(client, '{"inputs": [[1, [2]]]}')

    assert [error["loc"] for error in errors] == [["body", "inputs", 0, 1]]
    assert errors[0]["msg"] == (
        "inputs[0][1]: Input should be a valid number or a valid string, got [2]"
    )


# Unknown types ------------------------------------------------------------------------


def test_unknown_optimizer_type_lists_known(client: TestClient) -> None:
    errors = job_errors(client, optimizer={"type": "lbfgs"})

    assert [error["loc"] for error in errors] == [["body", "optimizer", "type"]]
    assert errors[0]["msg"] == (
        "optimizer.type: unknown optimizer 'lbfgs'; "
        "expected one of 'sgd', 'adam', 'adamw', 'rmsprop', 'adagrad'"
    )


def test_unknown_optimizer_string_located_at_field(client: TestClient) -> None:
    """A bare string has no type key, so the error stays at the field the client wrote."""
    errors = job_errors(client, optimizer="lbfgs")

    assert [error["loc"] for error in errors] == [["body", "optimizer"]]
    assert errors[0]["msg"].startswith("optimizer: unknown optimizer 'lbfgs'; expected one of")


def test_unknown_schedule_type_lists_known(client: TestClient) -> None:
    errors = job_errors(client, schedule={"type": "linear"})

    assert [error["loc"] for error in errors] == [["body", "schedule", "type"]]
    assert errors[0]["msg"] == (
        "schedule.type: unknown schedule 'linear'; "
        "expected one of 'constant', 'step', 'exponential', 'cosine'"
    )


def test_unknown_init_type_lists_known(client: TestClient) -> None:
    layer = {"type": "dense", "units": 1, "init": {"type": "ones"}}
    errors = job_errors(client, model={"layers": [layer]})

    assert [error["loc"] for error in errors] == [["body", "model", "layers", 0, "init", "type"]]
    assert errors[0]["msg"].startswith("model.layers[0].init.type: unknown init 'ones'")
    assert "'he_uniform'" in errors[0]["msg"]


def test_null_optimizer_type_shows_null(client: TestClient) -> None:
    errors = job_errors(client, optimizer={"type": None})

    assert errors[0]["msg"].startswith("optimizer.type: unknown optimizer None; expected")


def test_init_without_type_located_at_type(client: TestClient) -> None:
    layer = {"type": "dense", "units": 1, "init": {"value": 1.0}}
    errors = job_errors(client, model={"layers": [layer]})

    assert [error["loc"] for error in errors] == [["body", "model", "layers", 0, "init", "type"]]
    assert errors[0]["msg"].startswith("model.layers[0].init.type: missing; it selects which kind")


# Layer count --------------------------------------------------------------------------


def test_empty_layers_needs_one_layer(client: TestClient) -> None:
    errors = job_errors(client, model={"layers": []})

    assert [error["loc"] for error in errors] == [["body", "model", "layers"]]
    assert errors[0]["msg"] == "model.layers: needs at least 1 layer, got none"


def test_too_many_layers_names_maximum(client: TestClient) -> None:
    layers = [{"type": "dense", "units": 1}] * 65
    errors = job_errors(client, model={"layers": layers})

    assert [error["loc"] for error in errors] == [["body", "model", "layers"]]
    assert errors[0]["msg"] == "model.layers: takes at most 64 layers, got 65"


# Default types ------------------------------------------------------------------------


def test_optimizer_without_type_reports_lr(client: TestClient) -> None:
    """An optimizer object without type is adam, so the error is about lr itself."""
    errors = job_errors(client, optimizer={"lr": -1})

    assert [error["loc"] for error in errors] == [["body", "optimizer", "lr"]]
    assert errors[0]["msg"] == "optimizer.lr: Input should be greater than 0, got -1"


def test_optimizer_without_type_trains_adam(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={**TEA_SPEC, "optimizer": {"lr": 0.05}})

    assert response.status_code == 202, response.text
    assert response.json()["spec"]["optimizer"]["type"] == "adam"
    assert response.json()["spec"]["optimizer"]["lr"] == 0.05


def test_schedule_without_type_reports_field(client: TestClient) -> None:
    errors = job_errors(client, schedule={"warmup_epochs": -1})

    assert [error["loc"] for error in errors] == [["body", "schedule", "warmup_epochs"]]
    assert errors[0]["msg"].startswith("schedule.warmup_epochs: Input should be greater than")


def test_loss_without_type_still_requires_type(client: TestClient) -> None:
    """The loss follows the task when absent, so an object has no type to fall back on."""
    errors = job_errors(client, loss={"reduction": "sum"})

    assert [error["loc"] for error in errors] == [["body", "loss", "type"]]
    assert errors[0]["msg"] == "loss.type: missing; this field is required"


def test_detail_joins_each_error_once(client: TestClient) -> None:
    """The detail repeats each error's message once, in order."""
    response = client.post(
        "/v1/jobs", json={**TEA_SPEC, "optimizer": {"type": "lbfgs"}, "schedule": "linear"}
    )

    problem = assert_problem(response, 422)
    assert problem["detail"] == "; ".join(error["msg"] for error in problem["errors"])
    assert len(problem["errors"]) == 2


# JSON types ---------------------------------------------------------------------------


WRONG_TYPES = [
    ("training", {"epochs": True}, "training.epochs: Input should be a valid integer, got True"),
    ("training", {"seed": "7"}, "training.seed: Input should be a valid integer, got '7'"),
    (
        "training",
        {"shuffle": "yes"},
        "training.shuffle: Input should be a valid boolean, got 'yes'",
    ),
    ("training", {"shuffle": 1}, "training.shuffle: Input should be a valid boolean, got 1"),
    (
        "training",
        {"validation_split": "0.2"},
        "training.validation_split: Input should be a valid number, got '0.2'",
    ),
    ("optimizer", {"lr": False}, "optimizer.lr: Input should be a valid number, got False"),
]


def test_wrong_json_types_rejected(client: TestClient) -> None:
    """true, false and text are not numbers, and numbers are not booleans."""
    for part, value, message in WRONG_TYPES:
        errors = job_errors(client, **{part: value})

        assert [error["msg"] for error in errors] == [message], (part, value)


def test_units_true_rejected(client: TestClient) -> None:
    layers = [{"type": "dense", "units": True}, {"type": "dense", "units": 1}]

    errors = job_errors(client, model={"layers": layers})

    assert [error["msg"] for error in errors] == [
        "model.layers[0].units: Input should be a valid integer, got True"
    ]


def test_sweep_rule_count_true_rejected(client: TestClient) -> None:
    errors = sweep_errors(
        client,
        {"optimizer.lr": {"values": [0.01, 0.1]}},
        early_stopping={"rule": "median", "min_trials": True},
    )

    assert [error["msg"] for error in errors] == [
        "early_stopping.min_trials: Input should be a valid integer, got True"
    ]


def test_integral_float_and_int_accepted(client: TestClient) -> None:
    """JSON has one number type: 10.0 is the integer 10, and 1 is the number 1.0."""
    spec = {**TEA_SPEC, "training": {"epochs": 10.0}, "optimizer": {"type": "sgd", "lr": 1}}

    response = client.post("/v1/jobs", json=spec)

    assert response.status_code == 202, response.text
    stored = response.json()["spec"]
    assert stored["training"]["epochs"] == 10
    assert stored["optimizer"]["lr"] == 1.0


# Missing values -----------------------------------------------------------------------


def test_empty_body_says_missing_and_schema(client: TestClient) -> None:
    """An empty body is "missing", with the body's schema and its media type."""
    for path, schema in (("/v1/jobs", "JobSpec"), ("/v1/sweeps", "SweepCreate")):
        response = client.post(path, headers={"Content-Type": "application/json"})

        (error,) = assert_problem(response, 422)["errors"]
        assert error["loc"] == ["body"]
        assert error["msg"] == (
            f"the request body is missing; send a JSON object of the {schema} schema "
            "(see /openapi.json) with 'Content-Type: application/json'"
        )


def test_body_not_object_names_schema(client: TestClient) -> None:
    """A JSON body that is no object (a list, a string) names the schema it must follow."""
    for body, body_repr in (("[1, 2]", "[1, 2]"), ('"x"', "'x'")):
        response = client.post(
            "/v1/jobs", content=body, headers={"Content-Type": "application/json"}
        )

        (error,) = assert_problem(response, 422)["errors"]
        assert error["loc"] == ["body"]
        assert error["msg"] == (
            "the request body must be a JSON object of the JobSpec schema "
            f"(see /openapi.json), got {body_repr}"
        )


def test_missing_field_says_missing(client: TestClient) -> None:
    errors = job_errors(client, model={})

    assert [error["msg"] for error in errors] == ["model.layers: missing; this field is required"]
