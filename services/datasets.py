"""Load a job's training data: a built-in dataset by name, or an uploaded one from the database.

Uploaded datasets are stored as a ``DatasetRow`` (names, classes, task, encoding)
and a ``DatasetBlob`` holding NPZ bytes with the arrays ``x`` and ``y``. The blob is
read with ``allow_pickle=False``, so a stored file can never run code.

x is already encoded: text columns are one-hot. y contains class indices into the
row's ``classes`` for a text target, and the target's own numbers for a numeric
one (``encoding["target"]["type"] == "number"``), so a spec's ``task`` can train
a regression on integer labels. Rows stored without that entry hold class indices
whenever ``classes`` is set.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

import core
from core.encoding import Encoding
from services.errors import NotFound
from services.store.models import DatasetBlob, DatasetRow

__all__ = ["BUILTIN_PREFIX", "TrainingData", "load_dataset"]

BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The arrays and labels ``core.make_trainer`` needs, whatever the dataset's source.

    Attributes:
        name: the dataset's name.
        x: ndarray of shape (n_samples, n_features), float64; NaN marks a missing value.
        y: ndarray of shape (n_samples,) or (n_samples, n_outputs): class indices into
            ``classes``, class labels when ``classes`` is None, or regression values.
        task: "classification" or "regression".
        feature_names: one name per column of x.
        classes: class labels in index order, or None.
        encoding: the input columns of raw rows, when the data had text columns;
            a model trained on it needs it to encode raw rows (``core.Model.encoding``).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    task: Literal["classification", "regression"]
    feature_names: list[str]
    classes: list[Any] | None
    encoding: Encoding | None = None


def load_dataset(session: Session, tenant: str, dataset_id: str) -> TrainingData:
    """Load the dataset ``dataset_id``: a built-in one, or one that ``tenant`` uploaded.

    Raises:
        NotFound: no built-in dataset has that name, or no uploaded dataset of
            ``tenant`` has that id.
        ValueError: the stored file is not an NPZ archive with arrays ``x`` and ``y``.
    """
    if dataset_id.startswith(BUILTIN_PREFIX):
        return _load_builtin(dataset_id)
    return _load_upload(session, tenant, dataset_id)


def _load_builtin(dataset_id: str) -> TrainingData:
    try:
        dataset = core.load_builtin(dataset_id)
    except ValueError as error:
        raise NotFound(str(error)) from error
    return TrainingData(
        name=dataset.name,
        x=dataset.x,
        y=dataset.y,
        task=dataset.task,
        feature_names=list(dataset.feature_names),
        classes=None if dataset.classes is None else list(dataset.classes),
    )


def _load_upload(session: Session, tenant: str, dataset_id: str) -> TrainingData:
    row = session.scalar(
        select(DatasetRow).where(DatasetRow.id == dataset_id, DatasetRow.tenant == tenant)
    )
    blob = session.get(DatasetBlob, dataset_id) if row is not None else None
    if row is None or blob is None:
        raise NotFound(
            f"dataset {dataset_id!r} not found; use a built-in id such as 'builtin:iris' "
            "or the id of a dataset you uploaded"
        )
    x, y = _read_npz(dataset_id, blob.data)
    if row.task not in ("classification", "regression"):
        raise ValueError(f"dataset {dataset_id!r} has an invalid task {row.task!r}")
    stored: dict[str, Any] = row.encoding or {}
    encoding = Encoding.from_dict(stored) if "columns" in stored else None
    numeric_target = stored.get("target", {}).get("type") == "number"
    return TrainingData(
        name=row.name,
        x=x,
        y=y,
        task=row.task,  # type: ignore[arg-type]  # checked on the line above
        feature_names=[str(name) for name in row.feature_names],
        # The training loop finds the classes of numeric labels itself, in sorted order.
        classes=None if numeric_target else _stored_classes(row.classes),
        encoding=encoding if encoding is not None and encoding.has_text else None,
    )


def _read_npz(dataset_id: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Return (x, y) from the stored NPZ bytes, x as float64 of shape (n_samples, n_features)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            missing = [name for name in ("x", "y") if name not in archive.files]
            if missing:
                raise ValueError(
                    f"dataset {dataset_id!r} is missing the arrays {missing}; "
                    "upload it again with arrays 'x' and 'y'"
                )
            x, y = archive["x"], archive["y"]
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"dataset {dataset_id!r} is not a readable NPZ file: {error}") from error
    return np.asarray(x, dtype=np.float64), y


def _stored_classes(classes: Sequence[Any] | None) -> list[Any] | None:
    return None if classes is None else list(classes)
