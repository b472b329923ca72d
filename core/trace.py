"""The first training step of a run, decomposed: forward pass, loss, backward pass, update.

``trace_first_step`` builds the run's ``Trainer`` with ``core.fit.make_trainer``, so the
split, the preprocessing, the initial parameters and the random streams are the run's
own. It draws the first batch with ``Trainer.first_batch`` and takes one step by hand,
layer by layer, recording every intermediate value. The result is plain JSON.

Every array is encoded as ``{"shape": [...], "values": nested lists}`` when it has at
most ``max_values`` entries, and as ``{"shape": [...], "summary": {"mean", "std",
"min", "max", "l2_norm"}}`` otherwise. NaN and infinite values become null.

What each part holds, for a batch x of shape (n, n_features):

- ``input``, ``targets``: the batch after preprocessing, and its targets in the form the
  loss takes (class indices for cross_entropy, (n, n_outputs) values otherwise).
- ``forward``: per layer in order; a dense layer gives ``z = x @ weight + bias`` and
  ``a = activation(z)``, a dropout layer its ``output`` (after the mask).
- ``output``: the network's output y_hat, (n, n_outputs); logits for the cross-entropies.
- ``loss``: the value and ``grad_output``, dL/dy_hat.
- ``backward``: per layer from the last to the first dense layer. A dense layer gives
  ``grad_output`` (dL/da), ``grad_z`` (dL/dz), ``local_gradient`` (dz/dweight, which is
  the layer's input x, because dz_j/dweight_ij = x_i for each sample; dz/dbias is 1),
  ``grad_params`` (dL/dweight = x.T @ dL/dz and dL/dbias = dL/dz summed over the batch)
  and ``grad_input`` (dL/dx, null for the first dense layer, where the loop skips it).
- ``update``: the lr and, per parameter, its value ``before``, the ``grad`` the
  optimizer received (after clipping), the ``update`` applied (after - before) and the
  value ``after``, from the run's optimizer.

For ``y_hat = w * x`` with x = 2, y = 10, w = 0.5, squared error and SGD with lr 0.01,
the trace gives y_hat = 1, loss 81, dL/dy_hat = -18, local gradient 2, dL/dw = -36, and
w going from 0.5 to 0.86.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.fit import make_trainer
from core.layers import DenseLayer, DropoutLayer, Layer
from core.network import ParameterSlot
from core.optimizers import clip_grad_norm
from core.spec import JobSpec, Task
from core.training import Trainer

__all__ = ["encode_array", "trace_first_step"]

JSONDict = dict[str, Any]


def trace_first_step(
    spec: JobSpec | dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: Task | None = None,
    classes: Sequence[Any] | None = None,
    max_values: int = 64,
) -> JSONDict:
    """Take the run's first training step on (x, y) and return each stage's values.

    Args:
        spec: a ``JobSpec`` or its dict form.
        x: features of shape (n_samples, n_features), as ``core.fit`` takes them.
        y: targets of shape (n_samples,) or (n_samples, n_outputs).
        task, classes: as for ``core.fit``.
        max_values: arrays with more entries than this are summarized.

    Returns:
        A JSON-ready dict; the module docstring describes its parts.

    Raises:
        ValueError: ``max_values`` is below 1, or the data do not fit the spec.
        pydantic.ValidationError: the spec is invalid.
    """
    if max_values < 1:
        raise ValueError(f"max_values must be at least 1, got {max_values}")
    trainer = make_trainer(spec, x, y, task=task, classes=classes)
    x_batch, y_batch, lr = trainer.first_batch()

    # The loop ignores floating-point warnings and reports divergence instead; so does this.
    with np.errstate(all="ignore"):
        forward, outputs = _forward(trainer, x_batch, max_values)
        loss, grad_outputs = trainer.loss.value_and_grad(outputs, y_batch.values)
        backward = _backward(trainer, grad_outputs.copy(), max_values)
        update = _update(trainer, lr, max_values)

    return {
        "epoch": 1,
        "batch": 1,
        "batch_size": len(x_batch),
        "n_train": len(trainer.data.x_train),
        "task": trainer.data.task,
        "dtype": trainer.network.dtype.name,
        "n_parameters": trainer.network.n_parameters,
        "max_values": max_values,
        "lr": lr,
        "input": encode_array(x_batch, max_values),
        "targets": encode_array(y_batch.values, max_values),
        "forward": forward,
        "output": encode_array(outputs, max_values),
        "loss": {
            "type": trainer.data.loss.type,
            "reduction": trainer.data.loss.reduction,
            "value": _finite_or_none(loss),
            "grad_output": encode_array(grad_outputs, max_values),
        },
        "backward": backward,
        "update": update,
    }


# Forward pass ----------------------------------------------------------------------------


def _forward(trainer: Trainer, x: np.ndarray, max_values: int) -> tuple[list[JSONDict], np.ndarray]:
    """Run ``Network.forward``'s loop in training mode, recording each layer's values.

    Dropout draws its masks from the trainer's rng in the same order as the loop does.
    """
    records = []
    out = x
    for layer in trainer.network.layers:
        out = layer.forward(out, True, trainer.rng)
        records.append(_forward_record(layer, out, max_values))
    return records, out


def _forward_record(layer: Layer, out: np.ndarray, max_values: int) -> JSONDict:
    if isinstance(layer, DenseLayer):
        return {
            "layer": layer.name,
            "type": "dense",
            "activation": layer.activation.name,
            "units": layer.units,
            # The layer keeps z from its forward pass for the backward pass.
            "z": encode_array(_cached(layer._z), max_values),
            "a": encode_array(out, max_values),
        }
    assert isinstance(layer, DropoutLayer)
    return {
        "layer": layer.name,
        "type": "dropout",
        "rate": layer.rate,
        "output": encode_array(out, max_values),
    }


# Backward pass ---------------------------------------------------------------------------


def _backward(trainer: Trainer, grad_outputs: np.ndarray, max_values: int) -> list[JSONDict]:
    """Run ``Network.backward``'s loop, recording the gradients at each layer, last first.

    Fills ``trainer.network.grads`` exactly as ``Network.backward`` does.
    """
    layers = trainer.network.layers
    first_dense = next(i for i, layer in enumerate(layers) if layer.n_parameters)
    records = []
    grad = grad_outputs
    for index in range(len(layers) - 1, first_dense - 1, -1):
        layer = layers[index]
        need_input_grad = index > first_dense
        # Activations overwrite their incoming gradient in place, so record it first.
        record: JSONDict = {"layer": layer.name, "grad_output": encode_array(grad, max_values)}
        if isinstance(layer, DenseLayer):
            record.update(_dense_local_gradients(layer, grad, max_values))
        else:
            record["type"] = "dropout"
        result = layer.backward(grad, need_input_grad=need_input_grad)
        if isinstance(layer, DenseLayer):
            record["grad_params"] = _parameter_gradients(trainer, layer, max_values)
        record["grad_input"] = encode_array(result, max_values) if result is not None else None
        if result is not None:
            grad = result
        records.append(record)
    return records


def _dense_local_gradients(layer: DenseLayer, grad_a: np.ndarray, max_values: int) -> JSONDict:
    """Return dL/dz and the local gradients of a dense layer, before its backward runs.

    The layer's own backward computes dL/dz again from the same cached values with the
    same operations, so the two agree exactly.
    """
    z, a, x = _cached(layer._z), _cached(layer._a), _cached(layer._x)
    grad_z = layer.activation.backward(z, a, grad_a.copy())
    local: JSONDict = {"weight": encode_array(x, max_values)}
    if layer.use_bias:
        local["bias"] = 1.0
    return {"type": "dense", "grad_z": encode_array(grad_z, max_values), "local_gradient": local}


def _parameter_gradients(trainer: Trainer, layer: DenseLayer, max_values: int) -> JSONDict:
    """Return the layer's dL/dweight and dL/dbias, which its backward has just written."""
    gradients = {}
    for slot in trainer.network.slots:
        if slot.layer == layer.name:
            kind = slot.name.rpartition(".")[2]  # "weight" or "bias"
            gradients[kind] = encode_array(_slot_view(trainer.network.grads, slot), max_values)
    return gradients


# Update ----------------------------------------------------------------------------------


def _update(trainer: Trainer, lr: float, max_values: int) -> JSONDict:
    """Apply the run's optimizer to copies of the parameters and gradients, and report it.

    Gradient clipping uses the global L2 norm over all layers, as the loop does.
    """
    network = trainer.network
    # The loop's own norm, which falls back to float64 where a float32 sum overflows.
    total_norm = math.sqrt(sum(trainer._squared_norms(network.grads)))
    max_norm = trainer.spec.optimizer.clip_grad_norm
    grads = network.grads.copy()
    if max_norm is not None:
        clip_grad_norm(grads, total_norm, max_norm)
    received = grads.copy()  # the optimizer may overwrite grads in place
    before = network.params.copy()
    after = before.copy()
    trainer.optimizer.step(after, grads, lr)

    parameters = [
        {
            "name": slot.name,
            "layer": slot.layer,
            "shape": list(slot.shape),
            "before": encode_array(_slot_view(before, slot), max_values),
            "grad": encode_array(_slot_view(received, slot), max_values),
            "update": encode_array(_slot_view(after - before, slot), max_values),
            "after": encode_array(_slot_view(after, slot), max_values),
        }
        for slot in network.slots
    ]
    return {
        "optimizer": trainer.spec.optimizer.type,
        "lr": lr,
        "grad_norm": _finite_or_none(total_norm),
        "clip_grad_norm": max_norm,
        "clipped": max_norm is not None and max_norm / (total_norm + 1e-6) < 1,
        "parameters": parameters,
    }


def _slot_view(flat: np.ndarray, slot: ParameterSlot) -> np.ndarray:
    """Return one parameter's part of a flat (n_parameters,) vector, in its shape."""
    return flat[slot.start : slot.stop].reshape(slot.shape)


# Encoding --------------------------------------------------------------------------------


def encode_array(array: np.ndarray, max_values: int = 64) -> JSONDict:
    """Encode an array as its values when it has at most ``max_values`` entries, else a summary.

    Returns ``{"shape": [...], "values": nested lists}`` or ``{"shape": [...], "summary":
    {"mean", "std", "min", "max", "l2_norm"}}``; NaN and infinite entries become null
    in the values, and a summary over them is null where it is not finite.
    """
    array = np.asarray(array)
    shape = list(array.shape)
    if array.size <= max_values:
        if array.dtype.kind in "iub":
            return {"shape": shape, "values": array.tolist()}
        return {"shape": shape, "values": _nested_finite(array.astype(np.float64).tolist())}
    values = array.astype(np.float64).ravel()
    return {
        "shape": shape,
        "summary": {
            "mean": _finite_or_none(values.mean()),
            "std": _finite_or_none(values.std()),
            "min": _finite_or_none(values.min()),
            "max": _finite_or_none(values.max()),
            "l2_norm": _finite_or_none(math.sqrt(float(np.dot(values, values)))),
        },
    }


def _nested_finite(values: Any) -> Any:
    if isinstance(values, list):
        return [_nested_finite(value) for value in values]
    return _finite_or_none(values)


def _finite_or_none(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _cached(value: np.ndarray | None) -> np.ndarray:
    assert value is not None  # set by every forward pass in training mode
    return value
