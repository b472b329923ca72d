"""``core.fit``: train a spec on arrays in one call, without the service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.checkpoint import TrainingState
from core.data import prepare_data
from core.encoding import Encoding
from core.spec import JobSpec, Task, parse_spec
from core.training import Callback, FitResult, Trainer

__all__ = ["fit", "infer_task", "make_trainer"]


def infer_task(y: np.ndarray) -> Task:
    """Classification for integer, boolean or text targets; regression for floats."""
    y = np.asarray(y)
    if y.dtype.kind in "biuUSO":
        return "classification"
    return "regression"


def make_trainer(
    spec: JobSpec | dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: Task | None = None,
    classes: Sequence[Any] | None = None,
    feature_names: Sequence[str] | None = None,
    encoding: Encoding | None = None,
    callback: Callback | None = None,
    resume_from: TrainingState | None = None,
) -> Trainer:
    """Validate, split and preprocess the data and build a ready ``Trainer`` (see ``fit``)."""
    job_spec = parse_spec(spec)
    resolved_task = job_spec.resolved_task(task or infer_task(y))
    data = prepare_data(job_spec, x, y, resolved_task, classes, feature_names)
    data.encoding = encoding
    trainer = Trainer(job_spec, data, callback)
    if resume_from is not None:
        trainer.load_state_dict(resume_from)
    return trainer


def fit(
    spec: JobSpec | dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: Task | None = None,
    classes: Sequence[Any] | None = None,
    feature_names: Sequence[str] | None = None,
    encoding: Encoding | None = None,
    callback: Callback | None = None,
    resume_from: TrainingState | None = None,
) -> FitResult:
    """Train the network a spec describes on (x, y) and return the result.

    Args:
        spec: a ``JobSpec`` or its dict form (``dataset`` is required by the schema
            but not read here: the data are x and y).
        x: features, array-like of shape (n_samples, n_features); NaN only with
            ``preprocessing.impute``.
        y: targets of shape (n_samples,): class labels (any values, or indices into
            ``classes``) or regression values; (n_samples, n_outputs) for several
            regression targets.
        task: the dataset's task, used when neither ``spec.task`` nor ``spec.loss``
            decides it; inferred from y's dtype when None.
        classes: class labels when y holds indices into them.
        feature_names: names of x's columns, kept with the model.
        encoding: how raw rows with text columns become x's columns; kept with the
            model so that ``model.encode`` and parameter files accept raw rows.
        callback: hooks called after every batch and epoch; they can stop the run.
        resume_from: a checkpoint from ``Trainer.state_dict`` of a run of the same spec.

    Returns:
        FitResult with the history (one record per epoch), the parameters, the
        stop reason, the best monitored value and a ``Model`` that predicts.

    Raises:
        pydantic.ValidationError: the spec is invalid.
        ValueError, TypeError: the data do not fit the spec; the message says how.
    """
    trainer = make_trainer(
        spec,
        x,
        y,
        task=task,
        classes=classes,
        feature_names=feature_names,
        encoding=encoding,
        callback=callback,
        resume_from=resume_from,
    )
    return trainer.run()
