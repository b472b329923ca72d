"""Learning-rate schedules, as a function of the 0-based epoch index.

With ``warmup_epochs = W > 0`` the rate rises linearly over the first W epochs,
``lr * (e + 1) / W`` for ``e < W``, and the schedule then runs on ``e - W``:

- constant: ``lr``
- step: ``lr * gamma ** (e // step_size)``
- exponential: ``lr * gamma ** e``
- cosine: ``eta_min + (lr - eta_min) * (1 + cos(pi * min(e, t_max) / t_max)) / 2``, where
  ``t_max`` defaults to the epochs left after warmup.
"""

from __future__ import annotations

import math

from core.spec import (
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    ScheduleSpec,
    StepSchedule,
)

__all__ = ["learning_rate"]


def learning_rate(spec: ScheduleSpec, base_lr: float, epoch: int, epochs: int) -> float:
    """Return the learning rate for 0-based ``epoch`` of a run of ``epochs`` epochs."""
    warmup = spec.warmup_epochs
    if epoch < warmup:
        return base_lr * (epoch + 1) / warmup
    e = epoch - warmup
    match spec:
        case ConstantSchedule():
            return base_lr
        case StepSchedule(step_size=step_size, gamma=gamma):
            return base_lr * gamma ** (e // step_size)
        case ExponentialSchedule(gamma=gamma):
            return base_lr * gamma**e
        case CosineSchedule(t_max=t_max, eta_min=eta_min):
            period = t_max or max(epochs - warmup, 1)
            progress = min(e, period) / period
            return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * progress)) / 2
    raise ValueError(f"unknown schedule {spec!r}")
