"""Early-stopping rules for a sweep's trials: the median rule and ASHA.

Each rule judges one running trial from objective curves: lists whose entry ``i``
is the objective's value at epoch ``i + 1`` (None where it was not finite). A rule
returns a ``Judgement``: whether it had enough other trials to judge, and if the
trial should stop, a sentence saying which rule fired, at which epoch, with which
values.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Judgement", "asha_rule", "asha_rungs", "best_so_far", "median_rule", "running_average"]

Curve = Sequence[float | None]


@dataclass(frozen=True)
class Judgement:
    """The outcome of a rule: ``judged`` is False when too few other trials reached the epoch."""

    judged: bool
    stop_message: str | None = None


NOT_JUDGED = Judgement(judged=False)


def best_so_far(curve: Curve, epoch: int, mode: str) -> float | None:
    """Return the best finite value at epochs 1 to ``epoch``, or None if there is none."""
    values = [value for value in curve[:epoch] if value is not None and math.isfinite(value)]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


def running_average(curve: Curve, epoch: int) -> float | None:
    """Return the mean of the finite values at epochs 1 to ``epoch``, or None if there is none."""
    values = [value for value in curve[:epoch] if value is not None and math.isfinite(value)]
    return statistics.fmean(values) if values else None


def _worse(value: float, reference: float, mode: str) -> bool:
    return value > reference if mode == "min" else value < reference


def median_rule(
    curve: Curve,
    others: Sequence[Curve],
    epoch: int,
    *,
    mode: str,
    metric: str,
    min_trials: int,
) -> Judgement:
    """Judge a trial at ``epoch`` by the median stopping rule.

    The trial stops when its best value up to ``epoch`` is worse than the median of
    the running averages up to ``epoch`` of the ``others`` that reached it. A trial
    without a finite value yet is not judged.
    """
    best = best_so_far(curve, epoch, mode)
    if best is None:
        return NOT_JUDGED
    averages = [running_average(other, epoch) for other in others if len(other) >= epoch]
    finite_averages = [average for average in averages if average is not None]
    if len(finite_averages) < min_trials:
        return NOT_JUDGED
    median = statistics.median(finite_averages)
    if not _worse(best, median, mode):
        return Judgement(judged=True)
    return Judgement(
        judged=True,
        stop_message=(
            f"median stopping rule at epoch {epoch}: best {metric} {best:.4g} is worse than "
            f"the median {median:.4g} of the running averages of {len(finite_averages)} "
            "other trials"
        ),
    )


def asha_rungs(grace_epochs: int, reduction_factor: int, epochs: int) -> list[int]:
    """Return the rung epochs ``grace_epochs * reduction_factor**k`` below ``epochs``."""
    rungs = []
    rung = grace_epochs
    while rung < epochs:
        rungs.append(rung)
        rung *= reduction_factor
    return rungs


def asha_rule(
    curve: Curve,
    others: Sequence[Curve],
    rung: int,
    *,
    mode: str,
    metric: str,
    reduction_factor: int,
    min_trials: int,
) -> Judgement:
    """Judge a trial at rung epoch ``rung`` by asynchronous successive halving.

    Every trial that reached the rung has a value there: its best value up to the
    rung. The trial goes on only if its value is among the best
    ``max(1, n // reduction_factor)`` of those ``n`` values.
    """
    value = best_so_far(curve, rung, mode)
    if value is None:
        return NOT_JUDGED
    other_values = [best_so_far(other, rung, mode) for other in others if len(other) >= rung]
    finite_values = [other for other in other_values if other is not None]
    if len(finite_values) < min_trials:
        return NOT_JUDGED
    everyone = sorted([*finite_values, value], reverse=mode == "max")
    n_kept = max(1, len(everyone) // reduction_factor)
    cutoff = everyone[n_kept - 1]
    if not _worse(value, cutoff, mode):
        return Judgement(judged=True)
    return Judgement(
        judged=True,
        stop_message=(
            f"ASHA rule at epoch {rung}: best {metric} {value:.4g} is not among the best "
            f"{n_kept} of the {len(everyone)} trials that reached this epoch (cutoff "
            f"{cutoff:.4g}, reduction factor {reduction_factor})"
        ),
    )
