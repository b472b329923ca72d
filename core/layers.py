"""Layers. Each keeps what its backward pass needs from its forward pass.

Parameters and gradients are views into the network's flat vectors (see
``core.network``), so a layer never allocates or replaces them: it writes into
``weight``, ``bias``, ``grad_weight`` and ``grad_bias`` in place.
"""

from __future__ import annotations

import numpy as np

from core.activations import Activation

__all__ = ["DenseLayer", "DropoutLayer", "Layer"]


class Layer:
    """A step of the network: ``forward`` maps (n_samples, n_in) to (n_samples, n_out)."""

    name: str
    n_parameters = 0

    def forward(self, x: np.ndarray, training: bool, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray, need_input_grad: bool) -> np.ndarray | None:
        """Store parameter gradients and return dL/d(input), or None when not needed."""
        raise NotImplementedError


class DenseLayer(Layer):
    """``a = activation(x @ weight + bias)``.

    Shapes: ``weight`` (n_in, units), ``bias`` (units,); forward maps
    (n_samples, n_in) to (n_samples, units).
    """

    def __init__(
        self, name: str, n_in: int, units: int, activation: Activation, use_bias: bool
    ) -> None:
        self.name = name
        self.n_in = n_in
        self.units = units
        self.activation = activation
        self.use_bias = use_bias
        self.n_parameters = n_in * units + (units if use_bias else 0)
        self.weight: np.ndarray
        self.grad_weight: np.ndarray
        self.bias: np.ndarray | None = None
        self.grad_bias: np.ndarray | None = None
        self._x: np.ndarray | None = None
        self._z: np.ndarray | None = None
        self._a: np.ndarray | None = None

    def bind(self, params: np.ndarray, grads: np.ndarray) -> None:
        """Point the parameters and gradients at slices of the flat vectors (size n_parameters)."""
        n_weight = self.n_in * self.units
        self.weight = params[:n_weight].reshape(self.n_in, self.units)
        self.grad_weight = grads[:n_weight].reshape(self.n_in, self.units)
        if self.use_bias:
            self.bias = params[n_weight:]
            self.grad_bias = grads[n_weight:]

    def forward(self, x: np.ndarray, training: bool, rng: np.random.Generator) -> np.ndarray:
        z = x @ self.weight  # (n, n_in) @ (n_in, units) -> (n, units)
        if self.bias is not None:
            z += self.bias
        a = self.activation.forward(z)
        if training:
            self._x, self._z, self._a = x, z, a
        return a

    def backward(self, grad_output: np.ndarray, need_input_grad: bool) -> np.ndarray | None:
        assert self._x is not None and self._z is not None and self._a is not None
        grad_z = self.activation.backward(self._z, self._a, grad_output)
        np.matmul(self._x.T, grad_z, out=self.grad_weight)  # (n_in, n) @ (n, units)
        if self.grad_bias is not None:
            np.sum(grad_z, axis=0, out=self.grad_bias)
        if not need_input_grad:
            return None
        return grad_z @ self.weight.T  # (n, units) @ (units, n_in) -> (n, n_in)


class DropoutLayer(Layer):
    """Inverted dropout: in training, zero each value with probability ``rate`` and scale
    the rest by ``1 / (1 - rate)``; at inference, the identity."""

    def __init__(self, name: str, rate: float) -> None:
        self.name = name
        self.rate = rate
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool, rng: np.random.Generator) -> np.ndarray:
        if not training or self.rate == 0:
            self._mask = None
            return x
        keep = rng.random(x.shape, dtype=x.dtype) >= self.rate
        self._mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.rate))
        return x * self._mask

    def backward(self, grad_output: np.ndarray, need_input_grad: bool) -> np.ndarray | None:
        if self._mask is None:
            return grad_output
        return grad_output * self._mask
