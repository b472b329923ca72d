"""load_dataset for built-in and uploaded datasets, and a job trained on an uploaded one."""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import numpy as np
import pytest

from services.datasets import load_dataset
from services.errors import NotFound
from services.settings import Settings
from services.store.db import session_scope
from services.store.models import DatasetBlob, DatasetRow
from services.worker.runner import run_job
from tests.services.worker.helpers import create_job, read_history, read_job


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _store_upload(settings: Settings, data: bytes, **columns: Any) -> str:
    """Store an uploaded dataset row and its NPZ bytes as the upload endpoint would."""
    dataset_id = uuid.uuid4().hex
    values: dict[str, Any] = {
        "id": dataset_id,
        "tenant": "local",
        "name": "xor-upload",
        "task": "classification",
        "n_samples": 4,
        "n_features": 2,
        "n_outputs": 2,
        "feature_names": ["a", "b"],
        "target_names": ["label"],
        "classes": ["off", "on"],
        "encoding": {},
        "file_format": "npz",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        **columns,
    }
    with session_scope(settings.resolved_database_url) as session:
        session.add(DatasetRow(**values))
        session.flush()
        session.add(DatasetBlob(dataset_id=dataset_id, data=data))
    return dataset_id


XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])


def _load(settings: Settings, tenant: str, dataset_id: str) -> Any:
    with session_scope(settings.resolved_database_url, write=False) as session:
        return load_dataset(session, tenant, dataset_id)


def test_builtin_dataset_loads(settings: Settings) -> None:
    """A builtin: id loads the engine's dataset with its names and classes."""
    data = _load(settings, "local", "builtin:iris")

    assert data.x.shape == (150, 4)
    assert data.task == "classification"
    assert data.classes is not None and len(data.classes) == 3
    assert len(data.feature_names) == 4


def test_unknown_builtin_not_found(settings: Settings) -> None:
    """An unknown built-in name raises NotFound that lists the valid names."""
    with pytest.raises(NotFound, match="iris"):
        _load(settings, "local", "builtin:nope")


def test_upload_loads_arrays_and_names(settings: Settings) -> None:
    """An uploaded NPZ loads as float64 x, its y, and the row's names and classes."""
    dataset_id = _store_upload(settings, _npz(x=XOR_X.astype(np.float32), y=XOR_Y))

    data = _load(settings, "local", dataset_id)

    assert data.x.dtype == np.float64
    np.testing.assert_array_equal(data.x, XOR_X)
    np.testing.assert_array_equal(data.y, XOR_Y)
    assert (data.name, data.task) == ("xor-upload", "classification")
    assert data.feature_names == ["a", "b"]
    assert data.classes == ["off", "on"]


def test_upload_of_other_tenant_not_found(settings: Settings) -> None:
    """Another tenant's dataset id is not found, as if it did not exist."""
    dataset_id = _store_upload(settings, _npz(x=XOR_X, y=XOR_Y))

    with pytest.raises(NotFound, match=dataset_id):
        _load(settings, "someone-else", dataset_id)


def test_upload_missing_array_rejected(settings: Settings) -> None:
    """A stored file without y raises a ValueError that names the missing array."""
    dataset_id = _store_upload(settings, _npz(x=XOR_X))

    with pytest.raises(ValueError, match="'y'"):
        _load(settings, "local", dataset_id)


def test_upload_with_objects_rejected(settings: Settings) -> None:
    """A stored NPZ with an object array is rejected without unpickling it."""
    dataset_id = _store_upload(settings, _npz(x=XOR_X, y=np.array([{}, {}, {}, {}], dtype=object)))

    with pytest.raises(ValueError, match="allow_pickle"):
        _load(settings, "local", dataset_id)


def test_job_on_upload_trains(settings: Settings) -> None:
    """A job whose dataset is an upload trains on it and records its epochs."""
    dataset_id = _store_upload(settings, _npz(x=XOR_X, y=XOR_Y))
    spec = {
        "dataset": dataset_id,
        "model": {
            "layers": [
                {"type": "dense", "units": 8, "activation": "tanh"},
                {"type": "dense", "units": 2},
            ]
        },
        "optimizer": {"type": "adam", "lr": 0.05},
        "training": {"epochs": 5, "batch_size": 4},
    }
    job_id = create_job(settings, spec)

    outcome = run_job(job_id, worker_id="test-worker", settings=settings)

    assert outcome == "succeeded", read_job(settings, job_id).error_message
    assert [row.epoch for row in read_history(settings, job_id)] == [1, 2, 3, 4, 5]
    assert "train_accuracy" in read_job(settings, job_id).metrics
