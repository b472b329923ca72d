"""Finite-difference gradient checks for the backward pass of any spec.

``check_gradients`` builds the network a spec describes in float64, prepares the
data as ``core.fit`` does, and compares each analytic gradient entry ``a_i`` from
``Network.backward`` (all of them, or a seeded random subset) with the central
difference

    n_i = (L(p + eps*e_i) - L(p - eps*e_i)) / (2*eps)

where ``L`` is the loss over the whole training split as one batch. The relative
error of an entry is its error relative to the larger of the two values,

    |a_i - n_i| / max(|a_i|, |n_i|),

which is 0 for a perfect match and 2 for equal values of opposite sign.

An entry whose absolute error ``|a_i - n_i|`` is at most ``atol`` counts as error 0,
because rounding the loss to float64 already puts an error of about
``2.2e-16 * |L| / eps`` into every ``n_i``. Without that floor, entries where both
values are about zero would raise false alarms. The default ``atol`` is 100 times
that rounding error, ``100 * 2.2e-16 * max(|L|, 1) / eps``, which is 2.2e-8 for a
loss of order 1 and ``eps = 1e-6``.

Finite differences cannot see through kinks: a pre-activation within ``eps`` of
relu's 0, or a residual within ``eps`` of 0 for absolute_error or of ``delta`` for
huber, gives a large error there without a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.fit import make_trainer
from core.losses import Loss
from core.network import Network
from core.spec import JobSpec, Task, parse_spec

__all__ = ["GradCheckReport", "check_gradients", "check_network_gradients"]


@dataclass(frozen=True)
class GradCheckReport:
    """The result of comparing analytic gradients with central finite differences.

    Attributes:
        max_relative_error: the maximum relative error over the checked entries.
        max_absolute_error: the maximum ``|a_i - n_i|`` over the checked entries.
        relative_errors: the maximum relative error per parameter name
            (``"dense_0.weight"``, ...), for the parameters with checked entries.
        n_checked: the number of parameter entries compared.
        loss: the loss at the unperturbed parameters.
        atol: the absolute error at or below which an entry counted as error 0.
    """

    max_relative_error: float
    max_absolute_error: float
    relative_errors: dict[str, float]
    n_checked: int
    loss: float
    atol: float

    def passes(self, tolerance: float = 1e-6) -> bool:
        """Return True when every checked entry has a relative error below ``tolerance``."""
        return self.max_relative_error < tolerance


def check_network_gradients(
    network: Network,
    loss: Loss,
    x: np.ndarray,
    targets: np.ndarray,
    eps: float = 1e-6,
    *,
    indices: np.ndarray | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> GradCheckReport:
    """Compare ``network.backward`` with central finite differences of ``loss``.

    Each forward pass runs with ``training=True``, so that the dense layers keep what
    backward needs. Each also gets a fresh generator seeded with ``seed``, so a dropout
    layer applies the same mask in every pass and the check holds for that mask.
    ``network.params`` is perturbed in place and restored entry by entry. On return it
    contains its original values, and ``network.grads`` the analytic gradient.

    Args:
        network: a float64 network with the parameters to check at.
        loss: the loss, with the reduction the training uses.
        x: inputs of shape (n_samples, n_features), float64.
        targets: what ``loss`` takes, for example class indices of shape (n_samples,)
            for cross_entropy or values of shape (n_samples, n_outputs).
        eps: the finite-difference step.
        indices: the entries of the flat parameter vector to check, shape (n_checked,).
            Default: all of them.
        atol: the absolute error at or below which an entry counts as error 0.
            Default: 100 times the rounding error of the central difference (see above).
        seed: the seed of the generator each forward pass gets.

    Raises:
        ValueError: the network is not float64, eps or atol is not positive, an
            index lies outside the parameter vector, or the loss is not finite.
    """
    _check_arguments(network, eps, atol)
    params = network.params
    checked = np.arange(params.size) if indices is None else np.asarray(indices, dtype=np.int64)
    if checked.size and (checked.min() < 0 or checked.max() >= params.size):
        raise ValueError(
            f"indices must lie in [0, {params.size}), got {checked.min()}..{checked.max()}"
        )

    # No floating-point warning is raised, because an overflow shows up as a
    # non-finite loss or error anyway.
    with np.errstate(all="ignore"):
        loss_value, analytic = _analytic_gradient(network, loss, x, targets, checked, seed)
        if not np.isfinite(loss_value):
            raise ValueError(
                f"the loss at the given parameters is {loss_value}, but gradients can only "
                "be checked where the loss is finite"
            )
        numerical = _numerical_gradient(network, loss, x, targets, checked, eps, seed)

    if atol is None:
        atol = 100 * np.finfo(np.float64).eps * max(abs(loss_value), 1.0) / eps
    return _report(network, checked, analytic, numerical, atol, loss_value)


def check_gradients(
    spec: JobSpec | dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: Task | None = None,
    classes: Sequence[Any] | None = None,
    eps: float = 1e-6,
    seed: int = 0,
    max_params: int | None = None,
    atol: float | None = None,
) -> GradCheckReport:
    """Check the gradients of the network a spec describes, at its initial parameters.

    The spec is rebuilt with ``training.dtype`` set to float64 and every dropout
    rate set to 0, so dropout is the identity. The data are split and preprocessed
    as ``core.fit`` does, and the loss is taken over the whole training split as one
    batch, so each checked entry costs two forward passes over that split.

    Args:
        spec: a ``JobSpec`` or its dict form.
        x: features of shape (n_samples, n_features).
        y: targets of shape (n_samples,) or (n_samples, n_outputs), as for ``core.fit``.
        task, classes: as for ``core.fit``.
        eps: the finite-difference step.
        seed: the seed of the random choice of entries when ``max_params`` is set.
        max_params: check this many entries, drawn without replacement. Default: all.
        atol: the absolute error at or below which an entry counts as error 0.
            Default: 100 times the rounding error of the central difference.

    Raises:
        pydantic.ValidationError: the spec is invalid.
        ValueError: max_params is below 1, or the data do not fit the spec.
    """
    if max_params is not None and max_params < 1:
        raise ValueError(f"max_params must be at least 1 or None, got {max_params}")
    float64_spec = _float64_without_dropout(parse_spec(spec))
    trainer = make_trainer(float64_spec, x, y, task=task, classes=classes)
    network = trainer.network
    indices = None
    if max_params is not None and max_params < network.n_parameters:
        chosen = np.random.default_rng(seed).choice(network.n_parameters, max_params, replace=False)
        indices = np.sort(chosen)
    return check_network_gradients(
        network,
        trainer.loss,
        trainer.data.x_train,
        trainer.data.y_train.values,
        eps,
        indices=indices,
        atol=atol,
        seed=seed,
    )


def _float64_without_dropout(spec: JobSpec) -> JobSpec:
    """Return a copy of the spec that trains in float64 with every dropout rate at 0."""
    data = spec.model_dump(mode="json")
    data["training"]["dtype"] = "float64"
    for layer in data["model"]["layers"]:
        if layer["type"] == "dropout":
            layer["rate"] = 0.0
    return parse_spec(data)


def _check_arguments(network: Network, eps: float, atol: float | None) -> None:
    if network.dtype != np.float64:
        raise ValueError(
            f"gradient checks need a float64 network, got {network.dtype}. "
            "Build the network with dtype float64"
        )
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if atol is not None and not atol > 0:
        raise ValueError(f"atol must be positive, got {atol}")


def _analytic_gradient(
    network: Network,
    loss: Loss,
    x: np.ndarray,
    targets: np.ndarray,
    checked: np.ndarray,
    seed: int,
) -> tuple[float, np.ndarray]:
    """Return the loss and the backward pass's gradient entries at ``checked``."""
    outputs = network.forward(x, training=True, rng=np.random.default_rng(seed))
    loss_value, grad_outputs = loss.value_and_grad(outputs, targets)
    network.backward(grad_outputs)
    return loss_value, network.grads[checked].copy()


def _numerical_gradient(
    network: Network,
    loss: Loss,
    x: np.ndarray,
    targets: np.ndarray,
    checked: np.ndarray,
    eps: float,
    seed: int,
) -> np.ndarray:
    """Return the central differences at ``checked``, shape (n_checked,), float64.

    Each entry is perturbed in place and restored before the next.
    """
    params = network.params
    numerical = np.empty(checked.size, dtype=np.float64)
    for position, index in enumerate(checked):
        original = params[index]
        params[index] = original + eps
        loss_plus = _loss_at(network, loss, x, targets, seed)
        params[index] = original - eps
        loss_minus = _loss_at(network, loss, x, targets, seed)
        params[index] = original
        numerical[position] = (loss_plus - loss_minus) / (2 * eps)
    return numerical


def _loss_at(network: Network, loss: Loss, x: np.ndarray, targets: np.ndarray, seed: int) -> float:
    outputs = network.forward(x, training=True, rng=np.random.default_rng(seed))
    return loss.value(outputs, targets)


def _report(
    network: Network,
    checked: np.ndarray,
    analytic: np.ndarray,
    numerical: np.ndarray,
    atol: float,
    loss_value: float,
) -> GradCheckReport:
    # A non-finite gradient entry gives an error of NaN, which fails every tolerance.
    with np.errstate(invalid="ignore", over="ignore"):
        absolute = np.abs(analytic - numerical)
        scale = np.maximum(np.abs(analytic), np.abs(numerical))
        relative = np.where(absolute <= atol, 0.0, absolute / np.where(scale > 0, scale, 1.0))
    by_name: dict[str, float] = {}
    for slot in network.slots:
        in_slot = (checked >= slot.start) & (checked < slot.stop)
        if in_slot.any():
            by_name[slot.name] = float(relative[in_slot].max())
    return GradCheckReport(
        max_relative_error=float(relative.max(initial=0.0)),
        max_absolute_error=float(absolute.max(initial=0.0)),
        relative_errors=by_name,
        n_checked=int(checked.size),
        loss=float(loss_value),
        atol=float(atol),
    )
