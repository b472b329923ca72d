"""The Dataset record that every loader returns."""

from dataclasses import dataclass
from typing import Literal

import numpy as np

TASKS = ("classification", "regression")


def make_read_only(array: np.ndarray) -> np.ndarray:
    """Clear the array's writeable flag in place and return the same array."""
    array.flags.writeable = False
    return array


# eq=False because the generated __eq__ would compare ndarrays, whose `==` is elementwise.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A named table of samples with the targets to learn and the labels to report.

    Attributes:
        name: the dataset's name, without the "builtin:" prefix.
        x: ndarray of shape (n_samples, n_features), float64.
        y: for classification, ndarray of shape (n_samples,), int64 class indices in
            0..n_classes-1. For regression, ndarray of shape (n_samples,) or
            (n_samples, n_outputs), float64.
        task: "classification" or "regression".
        feature_names: one name per column of x.
        classes: class labels, where `classes[i]` is the label of class index i, for
            classification. None for regression.
        description: one or two sentences that describe the data and name its source.

    The constructor raises TypeError or ValueError when the arrays or names disagree with
    the rules above.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    task: Literal["classification", "regression"]
    feature_names: tuple[str, ...]
    classes: tuple[str, ...] | None
    description: str

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}.")
        _validate_x(self.x, self.feature_names)
        if self.task == "classification":
            _validate_class_targets(self.y, self.classes, len(self.x))
        else:
            _validate_regression_targets(self.y, self.classes, len(self.x))

    @property
    def n_samples(self) -> int:
        """Number of rows of x and y."""
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        """Number of columns of x."""
        return int(self.x.shape[1])

    @property
    def n_outputs(self) -> int:
        """Number of model outputs: n_classes for classification, else the number of targets."""
        if self.classes is not None:
            return len(self.classes)
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])


def _validate_x(x: np.ndarray, feature_names: tuple[str, ...]) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy ndarray, got {type(x).__name__}.")
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n_samples, n_features), got shape {x.shape}.")
    if x.dtype != np.float64:
        raise TypeError(f"x must have dtype float64, got {x.dtype}.")
    if x.shape[0] == 0:
        raise ValueError("x must contain at least one sample, got 0 rows.")
    if len(feature_names) != x.shape[1]:
        raise ValueError(
            f"feature_names must contain one name per column of x ({x.shape[1]}), "
            f"got {len(feature_names)} names."
        )


def _validate_y_length(y: np.ndarray, n_samples: int) -> None:
    if not isinstance(y, np.ndarray):
        raise TypeError(f"y must be a numpy ndarray, got {type(y).__name__}.")
    if y.ndim == 0 or y.shape[0] != n_samples:
        raise ValueError(f"y must have one row per sample of x ({n_samples}), got shape {y.shape}.")


def _validate_class_targets(y: np.ndarray, classes: tuple[str, ...] | None, n_samples: int) -> None:
    _validate_y_length(y, n_samples)
    if classes is None or len(classes) == 0:
        raise ValueError("classes must name at least one class when task is 'classification'.")
    if y.ndim != 1:
        raise ValueError(f"y must have shape (n_samples,) for classification, got {y.shape}.")
    if y.dtype != np.int64:
        raise TypeError(f"y must have dtype int64 for classification, got {y.dtype}.")
    if y.min() < 0 or y.max() >= len(classes):
        raise ValueError(
            f"y must contain class indices in 0..{len(classes) - 1}, "
            f"got values from {y.min()} to {y.max()}."
        )


def _validate_regression_targets(
    y: np.ndarray, classes: tuple[str, ...] | None, n_samples: int
) -> None:
    _validate_y_length(y, n_samples)
    if classes is not None:
        raise ValueError(f"classes must be None when task is 'regression', got {classes!r}.")
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ValueError(
            "y must have shape (n_samples,) or (n_samples, n_outputs) with n_outputs >= 1 "
            f"for regression, got {y.shape}."
        )
    if y.dtype != np.float64:
        raise TypeError(f"y must have dtype float64 for regression, got {y.dtype}.")
