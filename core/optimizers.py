"""Optimizers over the flat parameter vector, updating it in place.

Each follows PyTorch's update rule for the same hyperparameters (``lr``,
``momentum``, ``betas``, ``eps``, ``weight_decay``), written out in its docstring.
``step`` may overwrite ``grads``. All state arrays share the parameters' dtype.
"""

from __future__ import annotations

import math

import numpy as np

from core.spec import SGD, Adagrad, Adam, OptimizerSpec, RMSprop

__all__ = ["Optimizer", "clip_grad_norm", "make_optimizer"]


class Optimizer:
    """Base class: ``step(params, grads, lr)`` updates ``params`` (n_parameters,) in place."""

    state_names: tuple[str, ...] = ()

    def __init__(self, n_parameters: int, dtype: np.dtype) -> None:
        self.t = 0  # number of steps taken
        self.state = {name: np.zeros(n_parameters, dtype=dtype) for name in self.state_names}
        self._scratch = np.empty(n_parameters, dtype=dtype)

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> tuple[dict[str, np.ndarray], int]:
        """Copies of the state arrays and the step count."""
        return {name: value.copy() for name, value in self.state.items()}, self.t

    def load_state_dict(self, arrays: dict[str, np.ndarray], t: int) -> None:
        for name in self.state_names:
            self.state[name][...] = arrays[name]
        self.t = t


def _add_weight_decay(grads: np.ndarray, params: np.ndarray, decay: float, tmp: np.ndarray) -> None:
    """``g += decay * p``: the L2 penalty ``decay/2 * ||p||**2`` folded into the gradient."""
    if decay:
        np.multiply(params, decay, out=tmp)
        grads += tmp


class SGDOptimizer(Optimizer):
    """``g += wd*p; b = momentum*b + g; g = g + momentum*b if nesterov else b; p -= lr*g``.

    With ``momentum = 0``: ``p -= lr * (g + wd*p)``.
    """

    state_names = ("momentum_buffer",)

    def __init__(self, spec: SGD, n_parameters: int, dtype: np.dtype) -> None:
        super().__init__(n_parameters, dtype)
        self.spec = spec

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        spec, tmp = self.spec, self._scratch
        self.t += 1
        _add_weight_decay(grads, params, spec.weight_decay, tmp)
        if spec.momentum:
            buffer = self.state["momentum_buffer"]
            buffer *= spec.momentum
            buffer += grads
            if spec.nesterov:
                np.multiply(buffer, spec.momentum, out=tmp)
                grads += tmp
            else:
                grads = buffer
        np.multiply(grads, lr, out=tmp)
        params -= tmp


class AdamOptimizer(Optimizer):
    """Adam, and AdamW when ``decoupled``.

    ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g**2``,
    ``p -= lr/(1-b1**t) * m / (sqrt(v)/sqrt(1-b2**t) + eps)``.
    Adam adds ``wd*p`` to ``g`` first; AdamW multiplies ``p`` by ``1 - lr*wd`` first.

    The first moment is kept as the decayed gradient sum ``s = b1*s + g``, which is
    ``m / (1-b1)``: updating ``s`` takes one pass over the parameters fewer than
    updating ``m``, and the factor ``1-b1`` moves into the step's scalar. The step is then
    ``p -= c * s / (sqrt(v) + eps*sqrt(1-b2**t))`` with
    ``c = lr * (1-b1) * sqrt(1-b2**t) / (1-b1**t)``, the formula above rearranged.
    """

    state_names = ("decayed_grad_sum", "exp_avg_sq")

    def __init__(self, spec: Adam, n_parameters: int, dtype: np.dtype) -> None:
        super().__init__(n_parameters, dtype)
        self.spec = spec
        self.decoupled = spec.type == "adamw"

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        spec, tmp = self.spec, self._scratch
        beta1, beta2 = spec.betas
        s, v = self.state["decayed_grad_sum"], self.state["exp_avg_sq"]
        self.t += 1
        if self.decoupled:
            params *= 1 - lr * spec.weight_decay
        else:
            _add_weight_decay(grads, params, spec.weight_decay, tmp)

        s *= beta1
        s += grads

        v *= beta2
        np.multiply(grads, grads, out=tmp)
        tmp *= 1 - beta2
        v += tmp

        root_bias_correction2 = math.sqrt(1 - beta2**self.t)
        np.sqrt(v, out=tmp)
        tmp += spec.eps * root_bias_correction2
        np.divide(s, tmp, out=tmp)
        tmp *= lr * (1 - beta1) * root_bias_correction2 / (1 - beta1**self.t)
        params -= tmp

    def load_state_dict(self, arrays: dict[str, np.ndarray], t: int) -> None:
        if "decayed_grad_sum" not in arrays and "exp_avg" in arrays:
            # Format 1 checkpoints contain m itself. The conversion rounds, so the resumed
            # run ends close to an uninterrupted one, not bit for bit equal.
            arrays = {**arrays, "decayed_grad_sum": arrays["exp_avg"] / (1 - self.spec.betas[0])}
        super().load_state_dict(arrays, t)


class RMSpropOptimizer(Optimizer):
    """``v = alpha*v + (1-alpha)*g**2``; with momentum ``b = momentum*b + g/(sqrt(v)+eps)``,
    ``p -= lr*b``; without, ``p -= lr * g/(sqrt(v)+eps)``. ``wd*p`` is added to ``g`` first."""

    state_names = ("square_avg", "momentum_buffer")

    def __init__(self, spec: RMSprop, n_parameters: int, dtype: np.dtype) -> None:
        super().__init__(n_parameters, dtype)
        self.spec = spec

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        spec, tmp = self.spec, self._scratch
        v = self.state["square_avg"]
        self.t += 1
        _add_weight_decay(grads, params, spec.weight_decay, tmp)
        v *= spec.alpha
        np.multiply(grads, grads, out=tmp)
        tmp *= 1 - spec.alpha
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += spec.eps
        np.divide(grads, tmp, out=tmp)
        if spec.momentum:
            buffer = self.state["momentum_buffer"]
            buffer *= spec.momentum
            buffer += tmp
            np.multiply(buffer, lr, out=tmp)
        else:
            tmp *= lr
        params -= tmp


class AdagradOptimizer(Optimizer):
    """``s += g**2``; ``p -= lr * g / (sqrt(s) + eps)``. ``wd*p`` is added to ``g`` first."""

    state_names = ("sum",)

    def __init__(self, spec: Adagrad, n_parameters: int, dtype: np.dtype) -> None:
        super().__init__(n_parameters, dtype)
        self.spec = spec
        self.state["sum"][...] = spec.initial_accumulator_value

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        spec, tmp = self.spec, self._scratch
        accumulator = self.state["sum"]
        self.t += 1
        _add_weight_decay(grads, params, spec.weight_decay, tmp)
        np.multiply(grads, grads, out=tmp)
        accumulator += tmp
        np.sqrt(accumulator, out=tmp)
        tmp += spec.eps
        np.divide(grads, tmp, out=tmp)
        tmp *= lr
        params -= tmp


def make_optimizer(spec: OptimizerSpec, n_parameters: int, dtype: np.dtype) -> Optimizer:
    """Build the optimizer a spec names, with zeroed state for ``n_parameters`` values."""
    match spec:
        case SGD():
            return SGDOptimizer(spec, n_parameters, dtype)
        case Adam():
            return AdamOptimizer(spec, n_parameters, dtype)
        case RMSprop():
            return RMSpropOptimizer(spec, n_parameters, dtype)
        case Adagrad():
            return AdagradOptimizer(spec, n_parameters, dtype)
    raise ValueError(f"unknown optimizer {spec!r}")


def clip_grad_norm(grads: np.ndarray, total_norm: float, max_norm: float) -> None:
    """Scale ``grads`` in place by ``max_norm / (total_norm + 1e-6)`` when that is below 1."""
    coefficient = max_norm / (total_norm + 1e-6)
    if coefficient < 1:
        grads *= coefficient
