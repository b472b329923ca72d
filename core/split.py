"""Seeded train/validation splits, stratified by class for classification."""

from __future__ import annotations

import numpy as np

__all__ = ["held_out_count", "split_indices"]


def held_out_count(n_samples: int, fraction: float) -> int:
    """Return how many of ``n_samples`` a split of ``fraction`` holds out:
    ``round(fraction * n_samples)``, at least 1 when ``fraction > 0``, else 0."""
    if fraction <= 0:
        return 0
    return max(1, round(fraction * n_samples))


def split_indices(
    n_samples: int,
    fraction: float,
    rng: np.random.Generator,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n_samples)`` into train and held-out index arrays.

    The held-out part has ``round(fraction * n_samples)`` samples, at least 1 when
    ``fraction > 0``. With ``labels`` (n_samples,) of class indices, each class
    contributes in proportion to its size (largest remainders get the spare
    places), so a class with two or more samples appears on both sides.

    Raises:
        ValueError: the split would leave the training part empty.
    """
    if fraction <= 0:
        return np.arange(n_samples), np.empty(0, dtype=np.int64)
    n_held = held_out_count(n_samples, fraction)
    if n_held >= n_samples:
        raise ValueError(
            f"a split of {fraction} leaves no training samples out of {n_samples}; "
            "lower the split or add samples"
        )
    if labels is None:
        order = rng.permutation(n_samples)
        return np.sort(order[n_held:]), np.sort(order[:n_held])
    return _stratified(labels, n_held, rng)


def _stratified(
    labels: np.ndarray, n_held: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n_held / counts.sum()
    quota = np.minimum(np.floor(exact).astype(np.int64), counts - 1)
    # Hand out the places left by the largest remainders, keeping every class's last
    # sample in training; only when that is impossible does a class give up its last one.
    by_remainder = np.argsort(-(exact - quota), kind="stable")
    for cap in (counts - 1, counts):
        for index in by_remainder:
            if quota.sum() == n_held:
                break
            if quota[index] < cap[index]:
                quota[index] += 1
    held = [
        rng.permutation(np.flatnonzero(labels == cls))[:n_class_held]
        for cls, n_class_held in zip(classes, quota, strict=True)
    ]
    held_out = np.sort(np.concatenate(held))
    mask = np.ones(len(labels), dtype=bool)
    mask[held_out] = False
    return np.flatnonzero(mask), held_out
