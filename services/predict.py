"""A job's trained parameters: serving them as a parameter file, and predicting with them.

Loaded models are kept in a small in-process LRU cache keyed by the job's id and
row version (final weights) or by the checkpoint's epoch and attempt, so repeated
predictions do not parse the parameter file again.

Predictions take raw rows: lists in the dataset's column order or objects keyed by
column name, with text for text columns. A model trained on text columns needs
their categories (``core.Model.encoding``). When the stored parameter file has none,
they are taken from the job's dataset, and a downloaded NPZ or JSON file carries them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from sqlalchemy.orm import Session

import core
from core.data import prepare_data
from core.encoding import Encoding, RowError, value_location
from core.model import Model
from core.network import Network
from core.paramfile import load_model, to_json_dict, to_npz_bytes
from services import catalog
from services.datasets import load_dataset
from services.errors import Conflict, InvalidInput, NotFound
from services.jobs import require_job
from services.schemas import PredictRequest, PredictResponse
from services.settings import Settings
from services.store import jobs as job_store
from services.store.db import session_scope
from services.store.models import Checkpoint, DatasetRow, Job

__all__ = ["ParameterFile", "get_parameter_file", "predict"]

FileFormat = Literal["npz", "json"]

MODEL_CACHE_SIZE = 16

_Loaded = TypeVar("_Loaded")


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
        self._models: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_load(self, key: Hashable, load: Callable[[], _Loaded]) -> _Loaded:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                cached: _Loaded = self._models[key]
                return cached
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
    latest checkpoint of a running job. A failed job serves no final weights: only
    its latest checkpoint, when asked for.

    Raises:
        NotFound: no job of ``tenant`` has that id.
        Conflict: there are no weights yet (and no checkpoint, when one was requested),
            or the job failed.
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        job = require_job(session, tenant, job_id)
        if job.status == "failed" and checkpoint != "latest":
            hint = job_store.has_checkpoint(session, job.id)
            raise Conflict(_failed_message(job, hint_checkpoint=hint))
        weights = None if job.status == "failed" else job_store.get_weights(session, job.id)
        if weights is not None:
            loaded = _final_model(session, job, weights)
            if file_format == "npz" and not loaded.encoding_added:
                return ParameterFile(weights, "application/octet-stream", f"{job.id}.npz")
            model = loaded.model
        elif checkpoint == "latest":
            model = _checkpoint_model(session, tenant, job)
        else:
            raise Conflict(_no_weights_message(job, hint_checkpoint=True))
    if file_format == "npz":
        return ParameterFile(to_npz_bytes(model), "application/octet-stream", f"{job.id}.npz")
    content = json.dumps(to_json_dict(model), allow_nan=False).encode()
    return ParameterFile(content, "application/json", f"{job.id}.json")


@dataclass(frozen=True)
class _LoadedModel:
    """A model from stored weights, and whether its encoding came from the dataset."""

    model: Model
    encoding_added: bool


def _final_model(session: Session, job: Job, weights: bytes) -> _LoadedModel:
    key = ("weights", job.id, job.version)
    return _cache.get_or_load(key, lambda: _load_final_model(session, job, weights))


def _load_final_model(session: Session, job: Job, weights: bytes) -> _LoadedModel:
    model = load_model(weights)
    if model.encoding is not None:
        return _LoadedModel(model, encoding_added=False)
    # NOTE: weights written without an encoding get it from the job's dataset. Once that
    # dataset is deleted, such a model predicts only from encoded (one-hot) feature rows.
    encoding = _dataset_encoding(session, job)
    if encoding is None or not encoding.has_text or encoding.n_features != model.n_features:
        return _LoadedModel(model, encoding_added=False)
    model.encoding = encoding
    return _LoadedModel(model, encoding_added=True)


def _dataset_encoding(session: Session, job: Job) -> Encoding | None:
    """Return the input columns of the job's dataset, or None when it no longer exists."""
    if job.dataset.startswith(catalog.BUILTIN_PREFIX):
        try:
            names = catalog.describe_dataset(session, job.tenant, job.dataset).feature_names
        except NotFound:
            return None
        return Encoding.numeric(names)
    row = session.get(DatasetRow, job.dataset)
    if row is None or row.tenant != job.tenant:
        return None
    stored: dict[str, Any] = row.encoding or {}
    if "columns" in stored:
        return Encoding.from_dict(stored)
    return Encoding.numeric([str(name) for name in row.feature_names])


def _failed_message(job: Job, hint_checkpoint: bool) -> str:
    """Explain why a failed job serves no model: whatever parameters it stored when it
    stopped (a diverged run's last finite ones, say) are not a trained model."""
    reason = job.stop_reason or "error"
    if job.stop_message:
        reason += f": {job.stop_message}"
    message = f"job {job.id} failed ({reason}), so it has no trained model to serve"
    if hint_checkpoint:
        message += "; pass checkpoint=latest for the parameters of its last checkpoint"
    return message


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
        if job.status in ("queued", "running"):
            raise Conflict(
                f"job {job.id} has no checkpoint yet (status {job.status}, epoch {job.epoch}); "
                "try again after a few epochs"
            )
        if job.status == "failed":
            raise Conflict(
                f"job {job.id} has no checkpoint: it failed ({job.stop_reason}) before its "
                "first checkpoint was written"
            )
        raise Conflict(
            f"job {job.id} has no checkpoint (status {job.status}): the checkpoint of a job "
            "that succeeds or is cancelled is deleted when it ends; download its weights "
            "instead"
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
        spec,
        network,
        prepared.preprocessor,
        task,
        prepared.classes,
        prepared.feature_names,
        data.encoding,
    )


# Predicting ---------------------------------------------------------------------------


def predict(
    settings: Settings, tenant: str, job_id: str, request: PredictRequest
) -> PredictResponse:
    """Run the job's final model on the raw rows ``request.inputs``.

    Raises:
        NotFound: no job of ``tenant`` has that id.
        Conflict: the job has no weights yet, or it failed.
        InvalidInput: a row has the wrong number of values or the wrong keys, a value
            has the wrong type or is an unknown category, or a value is missing and
            the model cannot impute it. Malformed rows are reported before a missing
            model is, as a schema error would be.
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        job = require_job(session, tenant, job_id)
        if job.status == "failed":
            raise Conflict(_failed_message(job, hint_checkpoint=False))
        weights = job_store.get_weights(session, job.id)
        if weights is None:
            encoding = _dataset_encoding(session, job)
            if encoding is not None:
                _encode(encoding, request.inputs)
            raise Conflict(_no_weights_message(job, hint_checkpoint=False))
        model = _final_model(session, job, weights).model

    x = _encode(model.input_encoding, request.inputs)
    _check_missing(model, x, request.inputs)
    _check_range(model, x, request.inputs)
    try:
        outputs = model.predict_outputs(x)
        predictions = model.predict(x)
    except ValueError as error:
        raise InvalidInput(str(error), loc=("body", "inputs")) from error
    return PredictResponse(
        outputs=[[_finite_or_none(value) for value in row] for row in outputs.tolist()],
        predictions=[_json_value(value) for value in predictions.tolist()],
    )


def _encode(encoding: Encoding, rows: list[Any]) -> np.ndarray:
    """Return rows as float64 of shape (n_samples, n_features), with NaN for null."""
    try:
        return encoding.encode(rows, name="inputs")
    except RowError as error:
        loc: tuple[str | int, ...] = ("body", "inputs", error.row)
        if error.field is not None:
            loc += (error.field,)
        raise InvalidInput(error.message, loc=loc) from error


def _check_missing(model: Model, x: np.ndarray, rows: list[Any]) -> None:
    """Name the first missing value when the model was trained without imputation."""
    if model.preprocessor.fill is not None:
        return
    missing = np.argwhere(np.isnan(x))
    if not len(missing):
        return
    row, feature = (int(index) for index in missing[0])
    column, field = _place(model, rows, row, feature)
    where = value_location("inputs", row, field)
    raise InvalidInput(
        f"{where} (column {column!r}) is missing, but this model was trained without "
        "preprocessing.impute, so every value is required",
        loc=("body", "inputs", row, field),
    )


def _check_range(model: Model, x: np.ndarray, rows: list[Any]) -> None:
    """Name the first value too large for the model's dtype (1e308 in a float32 model)."""
    largest = float(np.finfo(model.network.dtype).max)
    beyond = np.argwhere(np.abs(np.nan_to_num(x, nan=0.0)) > largest)
    if not len(beyond):
        return
    row, feature = (int(index) for index in beyond[0])
    column, field = _place(model, rows, row, feature)
    where = value_location("inputs", row, field)
    dtype = np.dtype(model.network.dtype).name
    raise InvalidInput(
        f"{where} (column {column!r}) is {x[row, feature]:g}, beyond the range of this "
        f"{dtype} model (about ±{largest:.1e}); send values the model's dtype can hold",
        loc=("body", "inputs", row, field),
    )


def _place(model: Model, rows: list[Any], row: int, feature: int) -> tuple[str, int | str]:
    """Return the column of a feature and how the request names it: a key or a position."""
    encoding = model.input_encoding
    column = encoding.column_of_feature(feature)
    field: int | str = (
        column if isinstance(rows[row], dict) else encoding.column_names.index(column)
    )
    return column, field


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _json_value(value: Any) -> Any:
    """Turn a prediction (a label, a float, or a list of floats) into JSON-safe values."""
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, float):
        return _finite_or_none(value)
    return value
