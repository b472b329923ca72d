"""Turn raw arrays into what the training loop consumes: split, preprocessed, encoded, typed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.encoding import Encoding
from core.preprocessing import Preprocessor, check_finite_features, fit_preprocessor
from core.spec import JobSpec, LossSpec, Preprocessing, Task
from core.split import split_indices

__all__ = ["PreparedData", "encode_classes", "prepare_data", "seed_stream"]

SPLIT_STREAM, INIT_STREAM, TRAIN_STREAM = 0, 1, 2


def seed_stream(seed: int, stream: int) -> np.random.Generator:
    """An independent generator per purpose, so that changing one use of randomness
    (say, adding dropout) does not move the validation split or the initial weights."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


@dataclass
class Targets:
    """Targets in the form the loss needs, and class indices for accuracy (classification)."""

    values: np.ndarray  # cross_entropy: (n,) int64; others: (n, n_outputs) in the training dtype
    labels: np.ndarray | None  # (n,) int64 class indices, classification only

    def __len__(self) -> int:
        return len(self.values)

    def take(self, index: np.ndarray | slice) -> Targets:
        labels = None if self.labels is None else self.labels[index]
        return Targets(self.values[index], labels)


@dataclass
class PreparedData:
    x_train: np.ndarray  # (n_train, n_features) in the training dtype
    y_train: Targets
    x_val: np.ndarray | None  # (n_val, n_features) or None without a validation split
    y_val: Targets | None
    task: Task
    loss: LossSpec
    classes: list[Any] | None
    n_outputs: int
    preprocessor: Preprocessor
    feature_names: list[str]
    encoding: Encoding | None = None  # raw input columns, when the data had text columns


def encode_classes(y: np.ndarray, classes: Sequence[Any] | None) -> tuple[np.ndarray, list[Any]]:
    """Return class indices (n_samples,) int64 and the class labels in index order.

    With ``classes``, y must already hold indices into it; otherwise the sorted
    distinct values of y become the classes.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"classification targets must have shape (n_samples,), got {y.shape}")
    if classes is None:
        values, indices = np.unique(y, return_inverse=True)
        return indices.astype(np.int64), [value.item() for value in values]
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class indices when classes are given, got {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise ValueError(f"class indices must lie in [0, {len(classes)}), got {y.min()}..{y.max()}")
    return y.astype(np.int64), list(classes)


def _check_features(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x.reshape(-1, 1)  # (n_samples,) -> (n_samples, 1)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n_samples, n_features), got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
    if len(x) == 0:
        raise ValueError("x has no samples; at least 1 is needed")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    return x


def _encode_targets(
    y: np.ndarray, task: Task, loss: LossSpec, classes: Sequence[Any] | None, dtype: np.dtype
) -> tuple[Targets, list[Any] | None, int]:
    if task == "regression":
        values = np.asarray(y, dtype=np.float64)
        if not np.isfinite(values).all():
            row = int(np.argwhere(~np.isfinite(values))[0][0])
            raise ValueError(f"y has a missing or infinite value at row {row}")
        values = values.reshape(len(values), -1).astype(dtype)  # (n,) -> (n, n_outputs)
        return Targets(values, None), None, values.shape[1]
    labels, class_list = encode_classes(y, classes)
    if len(class_list) < 2:
        raise ValueError(
            f"classification needs at least 2 classes, got {len(class_list)} ({class_list})"
        )
    if loss.type == "binary_cross_entropy":
        if len(class_list) != 2:
            raise ValueError(
                f"binary_cross_entropy needs exactly 2 classes, got {len(class_list)}; "
                "use cross_entropy"
            )
        return Targets(labels.astype(dtype).reshape(-1, 1), labels), class_list, 1
    return Targets(labels, labels), class_list, len(class_list)


def prepare_data(
    spec: JobSpec,
    x: np.ndarray,
    y: np.ndarray,
    task: Task,
    classes: Sequence[Any] | None = None,
    feature_names: Sequence[str] | None = None,
) -> PreparedData:
    """Split with the spec's seed, fit preprocessing on the training part, and encode targets."""
    y = np.asarray(y)
    x = _check_features(x, y)
    dtype = np.dtype(spec.training.dtype)
    loss = spec.resolved_loss(task)
    targets, class_list, n_outputs = _encode_targets(y, task, loss, classes, dtype)
    stratify = task == "classification" and spec.training.stratify
    train_index, val_index = split_indices(
        len(x),
        spec.training.validation_split,
        seed_stream(spec.training.seed, SPLIT_STREAM),
        targets.labels if stratify else None,
    )
    x_float = _as_float(x)
    # Check every row before the split, so that an error names the row of x, not of a split.
    _check_feature_values(x_float, spec.preprocessing)
    has_val = len(val_index) > 0
    # Without a validation split, train_index is every row in order, and x needs no gather.
    x_train = x_float[train_index] if has_val else x_float
    preprocessor = _fit_preprocessing(spec.preprocessing, x_train)
    return PreparedData(
        x_train=_transform(preprocessor, x_train, dtype),
        y_train=targets.take(train_index),
        x_val=_transform(preprocessor, x_float[val_index], dtype) if has_val else None,
        y_val=targets.take(val_index) if has_val else None,
        task=task,
        loss=loss,
        classes=class_list,
        n_outputs=n_outputs,
        preprocessor=preprocessor,
        feature_names=list(feature_names or [f"x{i}" for i in range(x.shape[1])]),
    )


def _as_float(x: np.ndarray) -> np.ndarray:
    """Return x itself when its dtype is float16, float32 or float64, else x in float64.

    Those three convert exactly to float64, so skipping the float64 copy changes no
    value that preprocessing or the training dtype receives. Other dtypes (integers,
    longdouble) keep the float64 step, so they are rounded as before.
    """
    if x.dtype in (np.float16, np.float32, np.float64):
        return x
    return np.asarray(x, dtype=np.float64)


def _check_feature_values(x: np.ndarray, preprocessing: Preprocessing) -> None:
    """Raise ValueError for infinity in x (n_samples, n_features), and for NaN without imputation.

    The sum takes one pass, and a finite sum means that x contains no NaN and no infinity.
    Only when the sum is not finite (bad values, or a float overflow of the sum)
    do the slower checks run, and they find the row and column for the message.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = x.sum()
    if np.isfinite(total):
        return
    if preprocessing.impute == "none":
        Preprocessor().transform(x)
    else:
        check_finite_features(x)


def _fit_preprocessing(preprocessing: Preprocessing, x_train: np.ndarray) -> Preprocessor:
    """Fit the preprocessing on x_train (n_train, n_features), or return the identity.

    ``fit_preprocessor`` copies x_train to float64 for its statistics, which is
    wasted work when there are no statistics to compute.
    """
    if preprocessing.impute == "none" and not preprocessing.standardize:
        return Preprocessor()
    return fit_preprocessor(preprocessing, x_train)


def _transform(preprocessor: Preprocessor, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return a preprocessed copy of x (n_samples, n_features) in ``dtype``.

    The identity preprocessor only copies: ``_check_feature_values`` has already
    rejected NaN and infinity, which is all that its ``transform`` would check.
    """
    if not preprocessor.to_arrays():
        return np.array(x, dtype=dtype, order="C", copy=True)
    return preprocessor.transform(x, dtype)
