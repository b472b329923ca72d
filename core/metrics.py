"""Metrics: accuracy for classification, r2 and mae for regression.

``outputs`` are the network's raw outputs (n_samples, n_outputs). Class labels are
integer indices (n_samples,); regression targets are (n_samples, n_outputs).
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "mae", "predict_classes", "r2_score"]


def predict_classes(outputs: np.ndarray) -> np.ndarray:
    """Class indices (n_samples,) from logits: argmax, or ``z > 0`` for a single logit."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > 0).astype(np.int64)
    return outputs.argmax(axis=1)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predict_classes(outputs) == labels))


def mae(outputs: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.abs(outputs - targets), dtype=np.float64))


def r2_from_sums(sse: np.ndarray, sst: np.ndarray) -> float:
    """R2 averaged over outputs from per-output residual and total sums of squares.

    An output with zero variance scores 1.0 when predicted exactly and 0.0
    otherwise (scikit-learn's ``force_finite`` rule), so R2 is always finite.
    """
    sse = np.asarray(sse, dtype=np.float64)
    sst = np.asarray(sst, dtype=np.float64)
    scores = np.where(sst > 0, 1 - sse / np.where(sst > 0, sst, 1), np.where(sse == 0, 1.0, 0.0))
    return float(scores.mean())


def r2_score(outputs: np.ndarray, targets: np.ndarray) -> float:
    residual = np.asarray(outputs, dtype=np.float64) - targets
    centered = np.asarray(targets, dtype=np.float64) - targets.mean(axis=0)
    return r2_from_sums((residual**2).sum(axis=0), (centered**2).sum(axis=0))
