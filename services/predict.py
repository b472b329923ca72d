"""A job's trained parameters: serving them as a parameter file, and predicting with them.

Loaded models are kept in a small in-process LRU cache keyed by the job's id and
row version (final weights) or by the checkpoint's epoch and attempt, so repeated
predictions do not parse the parameter file again.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy.orm import Session

import core
from core.data import prepare_data
from core.model import Model
from core.network import Network
from core.paramfile import load_model, to_json_dict, to_npz_bytes
from services.datasets import load_dataset
from services.errors import Conflict, InvalidInput, NotFound
from services.jobs import require_job
from services.schemas import PredictRequest, PredictResponse
from services.settings import Settings
from services.store import jobs as job_store
from services.store.db import session_scope
from services.store.models import Checkpoint, Job

__all__ = ["ParameterFile", "get_parameter_file", "predict"]

FileFormat = Literal["npz", "json"]

MODEL_CACHE_SIZE = 16


@dataclass(frozen=True)
class ParameterFile:
    """A parameter file ready to send: its bytes, media type and suggested file name."""

    content: bytes
    media_type: str
    filename: str


class _ModelCache:
    """A thread-safe LRU cache of loaded models."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._models: OrderedDict[Hashable, Model] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_load(self, key: Hashable, load: Callable[[], Model]) -> Model:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        # Loading runs outside the lock; two threads may both load the same model once.
        model = load()
        with self._lock:
            self._models[key] = model
            self._models.move_to_end(key)
            while len(self._models) > self.max_size:
                self._models.popitem(last=False)
        return model


_cache = _ModelCache(MODEL_CACHE_SIZE)


# Parameter files ----------------------------------------------------------------------


def get_parameter_file(
    settings: Settings,
    tenant: str,
    job_id: str,
    file_format: FileFormat = "npz",
    checkpoint: Literal["latest"] | None = None,
) -> ParameterFile:
    """Return the job's trained parameters as an NPZ or JSON parameter file.

    Final weights, once written, are always served, because they supersede every
    checkpoint. Before that, ``checkpoint="latest"`` serves the parameters of the
    latest checkpoint of a running job.

    Raises:
        NotFound: no job of ``tenant`` has that id.
        Conflict: there are no weights yet (and no checkpoint, when one was requested).
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        job = require_job(session, tenant, job_id)
        weights = job_store.get_weights(session, job.id)
        if weights is not None:
            if file_format == "npz":
                return ParameterFile(weights, "application/octet-stream", f"{job.id}.npz")
            model = _final_model(job, weights)
        elif checkpoint == "latest":
            model = _checkpoint_model(session, tenant, job)
        else:
            raise Conflict(_no_weights_message(job, hint_checkpoint=True))
    if file_format == "npz":
        return ParameterFile(to_npz_bytes(model), "application/octet-stream", f"{job.id}.npz")
    content = json.dumps(to_json_dict(model), allow_nan=False).encode()
    return ParameterFile(content, "application/json", f"{job.id}.json")


def _final_model(job: Job, weights: bytes) -> Model:
    return _cache.get_or_load(("weights", job.id, job.version), lambda: load_model(weights))


def _no_weights_message(job: Job, hint_checkpoint: bool) -> str:
    message = f"job {job.id} has no weights yet (status {job.status})"
    if job.status in ("queued", "running"):
        message += "; wait until it succeeds"
        if hint_checkpoint:
            message += ", or pass checkpoint=latest for the parameters of its latest checkpoint"
    else:
        message += "; it ended before writing weights, so submit it again"
    return message


def _checkpoint_model(session: Session, tenant: str, job: Job) -> Model:
    """Load (or reuse) the model held by the job's latest checkpoint.

    Raises:
        Conflict: the job has no checkpoint yet, or its dataset no longer exists.
    """
    checkpoint = job_store.get_checkpoint(session, job.id)
    if checkpoint is None:
        raise Conflict(
            f"job {job.id} has no checkpoint yet (status {job.status}, epoch {job.epoch}); "
            "try again after a few epochs"
        )
    key = ("checkpoint", job.id, checkpoint.epoch, checkpoint.attempt)
    return _cache.get_or_load(key, lambda: _model_from_checkpoint(session, tenant, job, checkpoint))


def _model_from_checkpoint(
    session: Session, tenant: str, job: Job, checkpoint: Checkpoint
) -> Model:
    """Rebuild a predicting model from a checkpoint's flat parameter vector.

    A checkpoint contains no preprocessing, so the statistics are fitted again on the
    job's training split, exactly as the worker fitted them: same data, spec and seed.
    """
    spec = core.parse_spec(job.spec)
    try:
        data = load_dataset(session, tenant, job.dataset)
    except NotFound as error:
        raise Conflict(
            f"job {job.id}'s dataset {job.dataset!r} no longer exists, so its checkpoint "
            "cannot be turned into a parameter file"
        ) from error
    task = spec.resolved_task(data.task)
    prepared = prepare_data(spec, data.x, data.y, task, data.classes, data.feature_names)
    network = Network(spec.model, prepared.x_train.shape[1], spec.training.dtype)
    params = core.TrainingState.from_bytes(checkpoint.data).arrays["params"]
    network.params[:] = params.astype(network.dtype, copy=False)
    return Model(
        spec, network, prepared.preprocessor, task, prepared.classes, prepared.feature_names
    )


# Predicting ---------------------------------------------------------------------------


def predict(
    settings: Settings, tenant: str, job_id: str, request: PredictRequest
) -> PredictResponse:
    """Run the job's final model on ``request.inputs``.

    Raises:
        NotFound: no job of ``tenant`` has that id.
        Conflict: the job has no weights yet.
        InvalidInput: a row has the wrong number of values, or contains a missing value
            that the model cannot impute.
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        job = require_job(session, tenant, job_id)
        weights = job_store.get_weights(session, job.id)
        if weights is None:
            raise Conflict(_no_weights_message(job, hint_checkpoint=False))
        model = _final_model(job, weights)

    x = _input_array(request.inputs, model.n_features)
    try:
        outputs = model.predict_outputs(x)
        predictions = model.predict(x)
    except ValueError as error:
        raise InvalidInput(str(error), loc=("body", "inputs")) from error
    return PredictResponse(
        outputs=[[_finite_or_none(value) for value in row] for row in outputs.tolist()],
        predictions=[_json_value(value) for value in predictions.tolist()],
    )


def _input_array(rows: list[list[float | None]], n_features: int) -> np.ndarray:
    """Return rows as float64 of shape (n_samples, n_features), with NaN for null."""
    for index, row in enumerate(rows):
        if len(row) != n_features:
            raise InvalidInput(
                f"inputs[{index}] has {len(row)} values, but the model expects rows of "
                f"n_features={n_features} values",
                loc=("body", "inputs", index),
            )
    return np.array(
        [[np.nan if value is None else value for value in row] for row in rows], dtype=np.float64
    )


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _json_value(value: Any) -> Any:
    """Turn a prediction (a label, a float, or a list of floats) into JSON-safe values."""
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, float):
        return _finite_or_none(value)
    return value
