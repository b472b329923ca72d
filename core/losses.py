"""Losses on the network's raw outputs, each with its value and gradient together.

``reduction="sum"`` adds the per-element losses; ``"mean"`` divides by the number
of samples for the cross-entropies and by the number of elements (samples times
outputs) for the regression losses, as PyTorch does. The squared error has no
factor 1/2: for ``y_hat = 1`` and ``y = 10`` it is 81 and its gradient -18.
"""

from __future__ import annotations

import numpy as np

from core.activations import sigmoid
from core.spec import LossSpec

__all__ = ["Loss", "make_loss"]


class Loss:
    """Base class. ``outputs`` is (n_samples, n_outputs); ``targets`` depends on the loss."""

    name: str

    def __init__(self, reduction: str) -> None:
        self.reduction = reduction

    def _scale(self, outputs: np.ndarray) -> float:
        return 1.0 if self.reduction == "sum" else 1.0 / outputs.size

    def value_and_grad(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        """Return the loss and dL/d(outputs), an array shaped and typed like ``outputs``."""
        raise NotImplementedError

    def value(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        return self.value_and_grad(outputs, targets)[0]


class SquaredError(Loss):
    """``L = sum (y_hat - y)**2``; ``dL/dy_hat = 2 (y_hat - y)``. Targets (n_samples, n_outputs)."""

    name = "squared_error"

    def value_and_grad(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        residual = outputs - targets
        scale = self._scale(outputs)
        loss = float(np.dot(residual.ravel(), residual.ravel())) * scale
        residual *= 2 * scale
        return loss, residual


class AbsoluteError(Loss):
    """``L = sum |y_hat - y|``; ``dL/dy_hat = sign(y_hat - y)`` (0 where equal)."""

    name = "absolute_error"

    def value_and_grad(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        residual = outputs - targets
        scale = self._scale(outputs)
        loss = float(np.abs(residual).sum(dtype=np.float64)) * scale
        grad = np.sign(residual)
        grad *= scale
        return loss, grad


class Huber(Loss):
    """``r**2/2`` where ``|r| <= delta``, else ``delta*(|r| - delta/2)``; gradient ``clip(r)``."""

    name = "huber"

    def __init__(self, reduction: str, delta: float) -> None:
        super().__init__(reduction)
        self.delta = delta

    def value_and_grad(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        residual = outputs - targets
        magnitude = np.abs(residual)
        quadratic = np.minimum(magnitude, self.delta)
        per_element = 0.5 * quadratic * quadratic + self.delta * (magnitude - quadratic)
        scale = self._scale(outputs)
        loss = float(per_element.sum(dtype=np.float64)) * scale
        grad = np.clip(residual, -self.delta, self.delta)
        grad *= scale
        return loss, grad


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits ``z`` with targets t in {0, 1}, shape (n_samples, n_outputs).

    ``L = max(z, 0) - z*t + log(1 + exp(-|z|))``, the stable form of
    ``-t log s(z) - (1 - t) log(1 - s(z))``; ``dL/dz = sigmoid(z) - t``.
    """

    name = "binary_cross_entropy"

    def value_and_grad(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        z = outputs
        per_element = np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))
        scale = self._scale(outputs)
        loss = float(per_element.sum(dtype=np.float64)) * scale
        grad = sigmoid(z) - targets
        grad *= scale
        return loss, grad


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits (n_samples, n_classes) with integer labels (n_samples,).

    ``L = -sum_i log softmax(z_i)[y_i]``; ``dL/dz = softmax(z) - onehot(y)``. The
    logits are shifted by their row maximum, so no exp overflows.
    """

    name = "cross_entropy"

    def _scale(self, outputs: np.ndarray) -> float:
        return 1.0 if self.reduction == "sum" else 1.0 / outputs.shape[0]

    def value_and_grad(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        rows = np.arange(outputs.shape[0])
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)  # (n, 1), each >= 1
        log_likelihood = shifted[rows, targets] - np.log(total[:, 0])
        scale = self._scale(outputs)
        loss = -float(log_likelihood.sum(dtype=np.float64)) * scale
        exp /= total
        exp[rows, targets] -= 1
        exp *= scale
        return loss, exp


def make_loss(spec: LossSpec) -> Loss:
    """Build the loss a spec names."""
    match spec.type:
        case "squared_error":
            return SquaredError(spec.reduction)
        case "absolute_error":
            return AbsoluteError(spec.reduction)
        case "huber":
            return Huber(spec.reduction, spec.delta)
        case "binary_cross_entropy":
            return BinaryCrossEntropy(spec.reduction)
        case "cross_entropy":
            return CrossEntropy(spec.reduction)
    raise ValueError(f"unknown loss {spec.type!r}")
