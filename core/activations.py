"""Activation functions, each with its forward value and its local gradient side by side.

Every ``forward`` takes ``z`` of any shape and returns ``a`` of the same shape and
dtype. Every ``backward`` takes ``z``, ``a = forward(z)`` and ``grad_a`` (dL/da) and
returns dL/dz; it may overwrite ``grad_a`` in place. No function emits a
floating-point warning for any finite input, however large.
"""

from __future__ import annotations

import math

import numpy as np

from core.spec import ActivationSpec

__all__ = ["Activation", "make_activation"]

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715
# Past |z| = 10 the tanh approximation of GELU equals relu to float64 precision, and
# clipping there keeps z**3 from overflowing.
_GELU_CLIP = 10.0


class Activation:
    """Identity: ``a = z``, ``da/dz = 1``."""

    name = "linear"

    def forward(self, z: np.ndarray) -> np.ndarray:
        return z

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        return grad_a


class ReLU(Activation):
    """``a = max(z, 0)``, ``da/dz = [z > 0]``."""

    name = "relu"

    def forward(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        np.multiply(grad_a, z > 0, out=grad_a)
        return grad_a


class LeakyReLU(Activation):
    """``a = z if z > 0 else s*z``, ``da/dz = 1 or s``."""

    name = "leaky_relu"

    def __init__(self, negative_slope: float) -> None:
        self.negative_slope = negative_slope

    def forward(self, z: np.ndarray) -> np.ndarray:
        return np.where(z > 0, z, z * self.negative_slope)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        slope = np.where(z > 0, 1, self.negative_slope).astype(z.dtype, copy=False)
        np.multiply(grad_a, slope, out=grad_a)
        return grad_a


class ELU(Activation):
    """``a = z if z > 0 else alpha*(exp(z) - 1)``, ``da/dz = 1 or a + alpha``."""

    name = "elu"

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def forward(self, z: np.ndarray) -> np.ndarray:
        negative = np.expm1(np.minimum(z, 0)) * self.alpha
        return np.where(z > 0, z, negative)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        slope = np.where(z > 0, 1, a + self.alpha).astype(z.dtype, copy=False)
        np.multiply(grad_a, slope, out=grad_a)
        return grad_a


class GELU(Activation):
    """GELU in its tanh form (as in GPT-2 and PyTorch's ``approximate="tanh"``).

    ``a = z/2 * (1 + tanh(u))`` with ``u = c*(z + k*z**3)``;
    ``da/dz = (1 + t)/2 + z/2 * (1 - t**2) * c * (1 + 3k*z**2)`` with ``t = tanh(u)``.
    """

    name = "gelu"

    def _tanh_u(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        clipped = np.clip(z, -_GELU_CLIP, _GELU_CLIP)
        return clipped, np.tanh(_GELU_C * (clipped + _GELU_K * clipped**3))

    def forward(self, z: np.ndarray) -> np.ndarray:
        _, t = self._tanh_u(z)
        return 0.5 * z * (1 + t)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        clipped, t = self._tanh_u(z)
        du_dz = _GELU_C * (1 + 3 * _GELU_K * clipped**2)
        local = 0.5 * (1 + t) + 0.5 * clipped * (1 - t * t) * du_dz
        np.multiply(grad_a, local, out=grad_a)
        return grad_a


class Tanh(Activation):
    """``a = tanh(z)``, ``da/dz = 1 - a**2``."""

    name = "tanh"

    def forward(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        np.multiply(grad_a, 1 - a * a, out=grad_a)
        return grad_a


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function written with tanh, so no exp can overflow."""
    return 0.5 * (1 + np.tanh(0.5 * z))


class Sigmoid(Activation):
    """``a = 1/(1 + exp(-z))``, ``da/dz = a*(1 - a)``."""

    name = "sigmoid"

    def forward(self, z: np.ndarray) -> np.ndarray:
        return sigmoid(z)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        np.multiply(grad_a, a * (1 - a), out=grad_a)
        return grad_a


class Softplus(Activation):
    """``a = log(1 + exp(z))``, ``da/dz = sigmoid(z)``."""

    name = "softplus"

    def forward(self, z: np.ndarray) -> np.ndarray:
        return np.logaddexp(0, z).astype(z.dtype, copy=False)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        np.multiply(grad_a, sigmoid(z), out=grad_a)
        return grad_a


def make_activation(spec: ActivationSpec) -> Activation:
    """Build the activation a spec names."""
    match spec.type:
        case "linear":
            return Activation()
        case "relu":
            return ReLU()
        case "leaky_relu":
            return LeakyReLU(spec.negative_slope)
        case "elu":
            return ELU(spec.alpha)
        case "gelu":
            return GELU()
        case "tanh":
            return Tanh()
        case "sigmoid":
            return Sigmoid()
        case "softplus":
            return Softplus()
    raise ValueError(f"unknown activation {spec.type!r}")
