"""Tests of ``core.trace``: the first training step, decomposed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import core
from core.trace import encode_array, trace_first_step
from tests.core.helpers import TEA_SPEC, blobs, linear_regression_data, mlp_spec

# Enough room for every array of the small specs below to be given in full.
ALL_VALUES = 100_000


def values(encoded: dict[str, Any]) -> np.ndarray:
    """Decode an array that the trace gave in full."""
    assert "values" in encoded, f"expected full values, got a summary: {encoded}"
    return np.array(encoded["values"], dtype=np.float64).reshape(encoded["shape"])


def single(encoded: dict[str, Any]) -> float:
    """Decode an array of exactly one value."""
    array = values(encoded)
    assert array.size == 1, f"expected one value, got shape {array.shape}"
    return float(array.ravel()[0])


def classification_spec(**training: Any) -> dict[str, Any]:
    """Two hidden layers with dropout in between, so every kind of layer is traced."""
    spec = mlp_spec(3, **training)
    spec["model"]["layers"] = [
        {"type": "dense", "units": 6, "activation": "tanh"},
        {"type": "dropout", "rate": 0.3},
        {"type": "dense", "units": 5, "activation": "relu"},
        {"type": "dense", "units": 3},
    ]
    spec["training"].update(validation_split=0.25, seed=3)
    return spec


class FirstStepRecorder(core.Callback):
    """Keeps the parameters after the first optimizer step, then stops the run."""

    def __init__(self) -> None:
        self.params: np.ndarray | None = None

    def on_batch_end(self, trainer: core.Trainer, progress: core.BatchProgress) -> None:
        self.params = trainer.network.params.copy()
        trainer.request_stop("cancelled", "the test needs only the first step")


def test_one_weight_step_exact() -> None:
    """The one-weight example gives y_hat 1, loss 81, dL/dy_hat -18, dL/dw -36, w 0.86."""
    data = core.load_builtin("tea")

    trace = trace_first_step(TEA_SPEC, data.x, data.y, task=data.task)

    assert single(trace["input"]) == 2.0
    assert single(trace["targets"]) == 10.0
    assert single(trace["forward"][0]["z"]) == 1.0
    assert single(trace["output"]) == 1.0
    assert trace["loss"]["value"] == 81.0
    assert single(trace["loss"]["grad_output"]) == -18.0
    (layer,) = trace["backward"]
    assert single(layer["grad_output"]) == -18.0
    assert single(layer["grad_z"]) == -18.0
    assert single(layer["local_gradient"]["weight"]) == 2.0
    assert "bias" not in layer["local_gradient"]
    assert single(layer["grad_params"]["weight"]) == -36.0
    assert layer["grad_input"] is None
    assert trace["lr"] == 0.01
    (weight,) = trace["update"]["parameters"]
    assert weight["name"] == "dense_0.weight"
    assert single(weight["before"]) == 0.5
    assert single(weight["grad"]) == -36.0
    assert single(weight["update"]) == pytest.approx(0.36, abs=1e-15)
    assert single(weight["after"]) == 0.86


def test_trace_gradients_match_network_backward() -> None:
    """The traced parameter gradients equal Network.backward's on the same first batch."""
    x, y = blobs(n_samples=48, n_features=4)
    spec = classification_spec(batch_size=8)
    reference = core.make_trainer(spec, x, y)
    x_batch, y_batch, _ = reference.first_batch()
    outputs = reference.network.forward(x_batch, training=True, rng=reference.rng)
    loss, grad_outputs = reference.loss.value_and_grad(outputs, y_batch.values)
    reference.network.backward(grad_outputs)
    expected = {
        slot.name: reference.network.grads[slot.start : slot.stop].reshape(slot.shape)
        for slot in reference.network.slots
    }

    trace = trace_first_step(spec, x, y, max_values=ALL_VALUES)

    traced = {
        f"{layer['layer']}.{kind}": values(encoded)
        for layer in trace["backward"]
        if layer["type"] == "dense"
        for kind, encoded in layer["grad_params"].items()
    }
    assert sorted(traced) == sorted(expected)
    for name, gradient in expected.items():
        np.testing.assert_array_equal(traced[name], gradient, err_msg=name)
    assert trace["loss"]["value"] == pytest.approx(loss, rel=1e-6)
    np.testing.assert_array_equal(values(trace["output"]), outputs)


def test_trace_update_matches_first_step_of_run() -> None:
    """Every parameter's value after the traced update equals the run's after its first step."""
    x, y = blobs(n_samples=48, n_features=4)
    spec = classification_spec(batch_size=8)
    recorder = FirstStepRecorder()
    core.fit(spec, x, y, callback=recorder)
    assert recorder.params is not None
    trainer = core.make_trainer(spec, x, y)

    trace = trace_first_step(spec, x, y, max_values=ALL_VALUES)

    for slot, parameter in zip(trainer.network.slots, trace["update"]["parameters"], strict=True):
        assert parameter["name"] == slot.name
        after = recorder.params[slot.start : slot.stop].reshape(slot.shape)
        np.testing.assert_array_equal(values(parameter["after"]), after, err_msg=slot.name)
        # The update is after - before in the training dtype, float32 here.
        dtype = trainer.network.dtype
        update = values(parameter["after"]).astype(dtype) - values(parameter["before"]).astype(
            dtype
        )
        np.testing.assert_array_equal(values(parameter["update"]), update, err_msg=slot.name)


def test_trace_layers_in_loop_order() -> None:
    """Forward records every layer in order; backward goes from the last to the first dense."""
    x, y = blobs(n_samples=40, n_features=4)

    trace = trace_first_step(classification_spec(batch_size=8), x, y, max_values=ALL_VALUES)

    forward_names = [layer["layer"] for layer in trace["forward"]]
    backward_names = [layer["layer"] for layer in trace["backward"]]
    assert forward_names == ["dense_0", "dropout_1", "dense_2", "dense_3"]
    assert backward_names == ["dense_3", "dense_2", "dropout_1", "dense_0"]
    assert trace["backward"][-1]["grad_input"] is None
    assert trace["backward"][0]["grad_input"]["shape"] == [8, 5]
    assert trace["forward"][1]["type"] == "dropout"
    assert trace["forward"][1]["output"]["shape"] == [8, 6]


def test_trace_local_gradient_is_layer_input() -> None:
    """A dense layer's local gradient dz/dweight is its input: the previous layer's output."""
    x, y = blobs(n_samples=40, n_features=4)

    trace = trace_first_step(classification_spec(batch_size=8), x, y, max_values=ALL_VALUES)

    by_layer = {layer["layer"]: layer for layer in trace["backward"]}
    forward = {layer["layer"]: layer for layer in trace["forward"]}
    np.testing.assert_array_equal(
        values(by_layer["dense_0"]["local_gradient"]["weight"]), values(trace["input"])
    )
    np.testing.assert_array_equal(
        values(by_layer["dense_2"]["local_gradient"]["weight"]),
        values(forward["dropout_1"]["output"]),
    )
    assert by_layer["dense_2"]["local_gradient"]["bias"] == 1.0


def test_trace_weight_gradient_is_chain_rule() -> None:
    """dL/dweight equals the local gradient x transposed times dL/dz, for every dense layer."""
    x, y = linear_regression_data(n_samples=30)
    spec = mlp_spec(1, loss="squared_error", batch_size=10, shuffle=True, seed=5)

    trace = trace_first_step(spec, x, y, max_values=ALL_VALUES)

    for layer in trace["backward"]:
        if layer["type"] != "dense":
            continue
        x_layer = values(layer["local_gradient"]["weight"])
        grad_z = values(layer["grad_z"])
        np.testing.assert_allclose(
            values(layer["grad_params"]["weight"]), x_layer.T @ grad_z, rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(
            values(layer["grad_params"]["bias"]), grad_z.sum(axis=0), rtol=1e-5, atol=1e-7
        )


def test_trace_summarizes_large_arrays() -> None:
    """Arrays above max_values come as shape and statistics; small ones in full."""
    data = core.load_builtin("digits")
    spec = {
        "dataset": "builtin:digits",
        "model": {
            "layers": [
                {"type": "dense", "units": 32, "activation": "relu"},
                {"type": "dense", "units": 10},
            ]
        },
        "training": {"batch_size": 16},
    }

    trace = trace_first_step(spec, data.x, data.y, classes=data.classes, max_values=64)

    assert trace["input"]["shape"] == [16, 64]
    assert "values" not in trace["input"]
    assert set(trace["input"]["summary"]) == {"mean", "std", "min", "max", "l2_norm"}
    weight = trace["update"]["parameters"][0]
    assert weight["name"] == "dense_0.weight"
    assert weight["before"]["shape"] == [64, 32]
    assert "summary" in weight["before"]
    bias = trace["update"]["parameters"][1]
    assert bias["name"] == "dense_0.bias"
    assert bias["before"]["values"] == [0.0] * 32
    assert trace["targets"]["shape"] == [16]
    assert all(isinstance(label, int) for label in trace["targets"]["values"])


def test_encode_array_summary_statistics() -> None:
    """A summary gives the mean, std, min, max and L2 norm of the entries."""
    array = np.arange(12, dtype=np.float32).reshape(3, 4) - 4

    encoded = encode_array(array, max_values=10)

    assert encoded["shape"] == [3, 4]
    summary = encoded["summary"]
    assert summary["mean"] == pytest.approx(1.5)
    assert summary["std"] == pytest.approx(float(np.std(np.arange(12))))
    assert summary["min"] == -4.0
    assert summary["max"] == 7.0
    assert summary["l2_norm"] == pytest.approx(float(np.linalg.norm(array)))


def test_encode_array_non_finite_becomes_null() -> None:
    """NaN and infinity become null in full values and in summaries."""
    array = np.array([1.0, np.nan, np.inf])

    full = encode_array(array, max_values=3)
    summary = encode_array(array, max_values=2)["summary"]

    assert full["values"] == [1.0, None, None]
    assert summary["mean"] is None
    assert summary["l2_norm"] is None


def test_trace_reports_clipping() -> None:
    """With clip_grad_norm below the gradient's norm, the optimizer receives a clipped gradient."""
    data = core.load_builtin("tea")
    spec = {**TEA_SPEC, "optimizer": {"type": "sgd", "lr": 0.01, "clip_grad_norm": 1.0}}

    trace = trace_first_step(spec, data.x, data.y, task=data.task)

    assert trace["update"]["grad_norm"] == 36.0
    assert trace["update"]["clipped"] is True
    (weight,) = trace["update"]["parameters"]
    assert single(weight["grad"]) == pytest.approx(-1.0, rel=1e-6)
    assert single(weight["after"]) == pytest.approx(0.51, rel=1e-6)


def test_trace_rejects_max_values_below_one() -> None:
    """max_values must be at least 1."""
    data = core.load_builtin("tea")

    with pytest.raises(ValueError, match="max_values must be at least 1, got 0"):
        trace_first_step(TEA_SPEC, data.x, data.y, max_values=0)
