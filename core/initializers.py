"""Weight initializers. Each fills an array of shape (fan_in, fan_out) or (fan_out,)."""

from __future__ import annotations

import math

import numpy as np

from core.spec import ConstantInit, NormalInit, ScaledInit, UniformInit, ZerosInit

__all__ = ["initialize"]

InitSpec = ZerosInit | ConstantInit | NormalInit | UniformInit | ScaledInit


def initialize(
    spec: InitSpec, out: np.ndarray, fan_in: int, fan_out: int, rng: np.random.Generator
) -> None:
    """Fill ``out`` in place with values drawn as ``spec`` says.

    Glorot: ``std = sqrt(2 / (fan_in + fan_out))``, uniform limit ``sqrt(6 / (fan_in + fan_out))``.
    He: ``std = sqrt(2 / fan_in)``, uniform limit ``sqrt(6 / fan_in)``.
    Values are drawn in float64 and rounded to ``out.dtype``, so a float32 and a
    float64 run with the same seed start from the same weights up to rounding.
    """
    shape = out.shape
    match spec:
        case ZerosInit():
            values = np.zeros(shape)
        case ConstantInit(value=value):
            values = np.full(shape, value)
        case NormalInit(mean=mean, std=std):
            values = rng.normal(mean, std, size=shape)
        case UniformInit(low=low, high=high):
            values = rng.uniform(low, high, size=shape)
        case ScaledInit(type=kind):
            fan = fan_in + fan_out if kind.startswith("glorot") else fan_in
            if kind.endswith("normal"):
                values = rng.normal(0.0, math.sqrt(2.0 / fan), size=shape)
            else:
                limit = math.sqrt(6.0 / fan)
                values = rng.uniform(-limit, limit, size=shape)
        case _:
            raise ValueError(f"unknown initializer {spec!r}")
    out[...] = values
