"""History downsampling without a database: budget, ends, extremes and gaps."""

from __future__ import annotations

import math

import pytest

from services.store.history import MIN_POINTS, downsample, to_columns


def _columns(n_points: int) -> dict[str, list]:
    """A wavy train_loss with a spike and a dip in the middle, and a val_loss with gaps."""
    train = [1.0 + 0.1 * math.sin(i / 3) for i in range(n_points)]
    train[n_points // 3] = 50.0
    train[2 * n_points // 3] = -5.0
    val = [None if i % 7 == 0 else 2.0 + math.cos(i / 5) for i in range(n_points)]
    return {
        "epoch": list(range(1, n_points + 1)),
        "train_loss": train,
        "val_loss": val,
        "lr": [0.1] * n_points,
    }


@pytest.mark.parametrize("max_points", [MIN_POINTS, 7, 20, 101, 999])
def test_downsample_keeps_ends_and_extremes(max_points: int) -> None:
    """Every budget keeps the first, the last and both losses' minimum and maximum."""
    columns = _columns(1000)

    sampled = downsample(columns, max_points)

    assert len(sampled["epoch"]) <= max_points
    assert sampled["epoch"][0] == 1
    assert sampled["epoch"][-1] == 1000
    assert 50.0 in sampled["train_loss"]
    assert -5.0 in sampled["train_loss"]
    finite_val = [value for value in columns["val_loss"] if value is not None]
    assert min(finite_val) in sampled["val_loss"]
    assert max(finite_val) in sampled["val_loss"]
    assert sampled["epoch"] == sorted(set(sampled["epoch"]))
    assert {len(values) for values in sampled.values()} == {len(sampled["epoch"])}


def test_downsample_uses_most_of_the_budget() -> None:
    """Min-max buckets fill the budget instead of returning only the extremes."""
    sampled = downsample(_columns(1000), 100)

    assert len(sampled["epoch"]) >= 90


def test_downsample_without_loss_columns_spreads_points() -> None:
    """Without train_loss or val_loss the points are spread evenly, ends included."""
    columns = {"epoch": list(range(1, 101)), "lr": [0.1] * 100}

    sampled = downsample(columns, 10)

    assert len(sampled["epoch"]) <= 10
    assert sampled["epoch"][0] == 1
    assert sampled["epoch"][-1] == 100


def test_downsample_rejects_too_small_budget() -> None:
    """A budget below MIN_POINTS cannot hold the kept epochs."""
    with pytest.raises(ValueError, match="max_points must be at least"):
        downsample(_columns(50), MIN_POINTS - 1)


def test_to_columns_fills_missing_and_non_finite_values() -> None:
    """Names missing from an epoch and NaN or infinite values become None."""
    records = [(1, {"train_loss": 1.0}), (2, {"train_loss": math.nan, "val_loss": math.inf})]

    columns = to_columns(records)

    assert columns == {"epoch": [1, 2], "train_loss": [1.0, None], "val_loss": [None, None]}
