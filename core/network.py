"""The network: a stack of layers whose parameters live in one flat vector.

Keeping every parameter in one contiguous array (and every gradient in another)
lets an optimizer update the whole model with a handful of vectorized operations,
lets checkpoints and gradient norms work on plain slices, and keeps the dtype in
one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.activations import make_activation
from core.initializers import initialize
from core.layers import DenseLayer, DropoutLayer, Layer
from core.spec import Dense, ModelSpec, ScaledInit

__all__ = ["Network", "ParameterSlot"]

_RELU_LIKE = ("relu", "leaky_relu", "elu", "gelu", "softplus")


@dataclass(frozen=True)
class ParameterSlot:
    """The place of one named parameter in the flat vector."""

    name: str  # "dense_0.weight"
    layer: str  # "dense_0"
    start: int
    shape: tuple[int, ...]

    @property
    def stop(self) -> int:
        return self.start + int(np.prod(self.shape))


class Network:
    """A feed-forward network built from a model spec.

    Args:
        spec: the ``model`` part of a job spec.
        n_features: width of the input.
        dtype: float32 or float64; parameters, gradients and activations all use it.
    """

    def __init__(self, spec: ModelSpec, n_features: int, dtype: np.dtype | str) -> None:
        self.spec = spec
        self.n_features = n_features
        self.dtype = np.dtype(dtype)
        self.layers: list[Layer] = []
        self.slots: list[ParameterSlot] = []
        width = n_features
        offset = 0
        for index, layer_spec in enumerate(spec.layers):
            if isinstance(layer_spec, Dense):
                name = f"dense_{index}"
                layer = DenseLayer(
                    name,
                    width,
                    layer_spec.units,
                    make_activation(layer_spec.activation),
                    layer_spec.bias,
                )
                weight_shape = (width, layer.units)
                self.slots.append(ParameterSlot(f"{name}.weight", name, offset, weight_shape))
                if layer.use_bias:
                    start = offset + width * layer.units
                    self.slots.append(ParameterSlot(f"{name}.bias", name, start, (layer.units,)))
                offset += layer.n_parameters
                width = layer.units
                self.layers.append(layer)
            else:
                self.layers.append(DropoutLayer(f"dropout_{index}", layer_spec.rate))
        self.n_outputs = width
        self.params = np.zeros(offset, dtype=self.dtype)
        self.grads = np.zeros(offset, dtype=self.dtype)
        self._bind()

    def _bind(self) -> None:
        offset = 0
        for layer in self.dense_layers:
            stop = offset + layer.n_parameters
            layer.bind(self.params[offset:stop], self.grads[offset:stop])
            offset = stop

    @property
    def dense_layers(self) -> list[DenseLayer]:
        return [layer for layer in self.layers if isinstance(layer, DenseLayer)]

    @property
    def n_parameters(self) -> int:
        return int(self.params.size)

    def layer_slices(self) -> list[tuple[str, slice]]:
        """Return each dense layer's name and its slice of the flat vectors."""
        slices = []
        offset = 0
        for layer in self.dense_layers:
            slices.append((layer.name, slice(offset, offset + layer.n_parameters)))
            offset += layer.n_parameters
        return slices

    def initialize(self, rng: np.random.Generator) -> None:
        """Draw every parameter from its layer's initializer, in layer order."""
        specs = [s for s in self.spec.layers if isinstance(s, Dense)]
        for layer, layer_spec in zip(self.dense_layers, specs, strict=True):
            init = layer_spec.init or _default_init(layer_spec)
            initialize(init, layer.weight, layer.n_in, layer.units, rng)
            if layer.bias is not None:
                initialize(layer_spec.bias_init, layer.bias, layer.n_in, layer.units, rng)

    def parameters(self) -> dict[str, np.ndarray]:
        """Return a copy of every parameter by name (``dense_0.weight``: (n_in, units), ...)."""
        return {
            slot.name: self.params[slot.start : slot.stop].reshape(slot.shape).copy()
            for slot in self.slots
        }

    def load_parameters(self, values: dict[str, np.ndarray]) -> None:
        """Copy named parameters in, checking that names and shapes match this network."""
        expected = {slot.name for slot in self.slots}
        if set(values) != expected:
            raise ValueError(f"parameters must be named {sorted(expected)}, got {sorted(values)}")
        for slot in self.slots:
            value = np.asarray(values[slot.name])
            if value.shape != slot.shape:
                raise ValueError(
                    f"parameter {slot.name} must have shape {slot.shape}, got {value.shape}"
                )
            self.params[slot.start : slot.stop] = value.ravel()

    def forward(
        self, x: np.ndarray, training: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Map x of shape (n_samples, n_features) to outputs of shape (n_samples, n_outputs)."""
        if training and rng is None:
            raise ValueError("forward(training=True) needs an rng for dropout")
        generator = rng if rng is not None else np.random.default_rng(0)
        out = x
        for layer in self.layers:
            out = layer.forward(out, training, generator)
        return out

    def backward(self, grad_output: np.ndarray) -> None:
        """Fill ``grads`` with dL/d(params) given dL/d(outputs) of shape (n_samples, n_outputs).

        The gradient with respect to the network's input is never computed.
        """
        grad = grad_output
        first_dense = next(i for i, layer in enumerate(self.layers) if layer.n_parameters)
        for index in range(len(self.layers) - 1, first_dense - 1, -1):
            result = self.layers[index].backward(grad, need_input_grad=index > first_dense)
            if result is not None:
                grad = result

    def forward_in_chunks(self, x: np.ndarray, chunk_size: int = 4096) -> np.ndarray:
        """Inference forward pass in chunks, so memory stays bounded for large inputs."""
        if len(x) <= chunk_size:
            return self.forward(x)
        parts = [self.forward(x[i : i + chunk_size]) for i in range(0, len(x), chunk_size)]
        return np.concatenate(parts)


def _default_init(spec: Dense) -> ScaledInit:
    if spec.activation.type in _RELU_LIKE:
        return ScaledInit(type="he_uniform")
    return ScaledInit(type="glorot_uniform")
