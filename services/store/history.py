"""Per-epoch history: reading it as columns, and downsampling long runs for plotting."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.store.models import HistoryRow

__all__ = ["MIN_POINTS", "downsample", "read_history_columns", "to_columns"]

Columns = dict[str, list[int | float | None]]

# Downsampling always keeps these columns' minimum and maximum.
EXTREMA_COLUMNS = ("train_loss", "val_loss")
# The first epoch, the last, and the minimum and maximum of each column above.
MIN_POINTS = 2 + 2 * len(EXTREMA_COLUMNS)


def read_history_columns(session: Session, job_id: str, after_epoch: int = 0) -> Columns:
    """Read the job's epochs after ``after_epoch`` as columns, in epoch order.

    With no epoch after ``after_epoch``, the columns of the last stored epoch are
    returned empty, so that a client polling for new epochs always gets the same names.
    """
    rows = session.execute(
        select(HistoryRow.epoch, HistoryRow.values)
        .where(HistoryRow.job_id == job_id, HistoryRow.epoch > after_epoch)
        .order_by(HistoryRow.epoch)
    ).all()
    if not rows and after_epoch > 0:
        last = session.scalar(
            select(HistoryRow.values)
            .where(HistoryRow.job_id == job_id)
            .order_by(HistoryRow.epoch.desc())
            .limit(1)
        )
        if last is not None:
            return {"epoch": [], **{name: [] for name in last if name != "epoch"}}
    return to_columns((epoch, values) for epoch, values in rows)


def to_columns(records: Iterable[tuple[int, dict[str, float]]]) -> Columns:
    """Turn (epoch, values) records into ``{"epoch": [...], name: [...], ...}``.

    Columns appear in the order their names first occur. An epoch without a value
    for a name gets None there, and so does a NaN or infinite value (JSON has no
    representation for either).
    """
    records = list(records)
    names = list(dict.fromkeys(name for _, values in records for name in values))
    names = [name for name in names if name != "epoch"]
    columns: Columns = {"epoch": [epoch for epoch, _ in records]}
    for name in names:
        columns[name] = [_finite_or_none(values.get(name)) for _, values in records]
    return columns


def _finite_or_none(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def downsample(columns: Columns, max_points: int) -> Columns:
    """Keep at most ``max_points`` epochs of ``columns`` for plotting.

    The result always contains the first and the last epoch and the epochs of the
    minimum and maximum of train_loss and val_loss. The rest of the budget goes to
    min-max decimation: the epochs in between are cut into equal buckets, and each
    bucket keeps the epochs of its smallest and largest loss, so spikes survive.

    Raises:
        ValueError: ``max_points`` is below ``MIN_POINTS``.
    """
    if max_points < MIN_POINTS:
        raise ValueError(f"max_points must be at least {MIN_POINTS}, got {max_points}")
    n_points = len(columns["epoch"])
    if n_points <= max_points:
        return columns

    keep = {0, n_points - 1}
    for name in EXTREMA_COLUMNS:
        if name in columns:
            keep.update(_extrema(_as_array(columns[name]), offset=0))
    loss = _reference_loss(columns)
    budget = max_points - len(keep)
    if loss is None:
        keep.update(np.linspace(1, n_points - 2, budget).round().astype(int).tolist())
    else:
        keep.update(_bucket_extrema(loss, n_buckets=budget // 2))

    indices = sorted(keep)
    return {name: [values[i] for i in indices] for name, values in columns.items()}


def _as_array(values: list[int | float | None]) -> np.ndarray:
    """Return values as float64 with NaN for None, shape (n_points,)."""
    return np.array([math.nan if value is None else value for value in values], dtype=np.float64)


def _reference_loss(columns: Columns) -> np.ndarray | None:
    """Return the loss column that bucket decimation follows: train_loss, else val_loss."""
    for name in EXTREMA_COLUMNS:
        if name in columns:
            values = _as_array(columns[name])
            if not np.isnan(values).all():
                return values
    return None


def _extrema(values: np.ndarray, offset: int) -> list[int]:
    """Indices (plus ``offset``) of the smallest and largest non-NaN value, if any."""
    if values.size == 0 or np.isnan(values).all():
        return []
    return [int(np.nanargmin(values)) + offset, int(np.nanargmax(values)) + offset]


def _bucket_extrema(values: np.ndarray, n_buckets: int) -> list[int]:
    """Indices of each bucket's minimum and maximum, over the points between the ends."""
    if n_buckets < 1:
        return []
    edges = np.linspace(1, values.size - 1, n_buckets + 1).round().astype(int)
    picked: list[int] = []
    for start, stop in itertools.pairwise(edges):
        picked.extend(_extrema(values[start:stop], offset=int(start)))
    return picked
