"""The Python client against a live service: a user's whole session, retries and errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import core
from services.client import (
    Client,
    ConflictError,
    Job,
    NotFoundError,
    Sweep,
    ValidationError,
)
from tests.services.client.live import IRIS_SPEC, LiveService

# Long enough to be cancelled while it runs: thousands of small batches per epoch.
LONG_SPEC: dict[str, Any] = {
    **IRIS_SPEC,
    "name": "long",
    "training": {"epochs": 5000, "batch_size": 1, "seed": 0, "validation_split": 0.2},
}


def write_iris_csv(path: Path) -> Path:
    """Write iris as a CSV with the four features and a text ``species`` target."""
    iris = core.load_builtin("iris")
    lines = [",".join([*iris.feature_names, "species"])]
    for features, label in zip(iris.x, iris.y, strict=True):
        lines.append(",".join([*map(str, features), str(iris.classes[label])]))
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_until_running(steep: Client, job_id: str) -> Job:
    deadline = time.monotonic() + 30
    while True:
        job = steep.get(job_id)
        if job.status == "running" and job.progress.epoch >= 1:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is still {job.status}"
        time.sleep(0.05)


def test_user_session_through_client(service: LiveService, tmp_path: Path) -> None:
    """Upload, train, read history and weights, predict locally and remotely, sweep, clean up."""
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]

    with Client(service.url, service.api_key) as steep:
        dataset = steep.upload_dataset(write_iris_csv(tmp_path / "iris.csv"), target="species")
        job = steep.submit({**IRIS_SPEC, "dataset": dataset["id"]})
        finished = steep.wait(job.id, poll_seconds=0.05, timeout=60)
        columns = steep.history(finished.id)
        later = steep.history(finished.id, after_epoch=6)
        weights_path = steep.download_weights(finished.id, tmp_path / "iris.npz")
        json_path = steep.download_weights(finished.id, tmp_path / "iris.json")
        arrays = steep.weight_arrays(finished.id)
        local_model = steep.load_model(finished.id)
        served = steep.predict(finished.id, rows)
        trace = steep.trace(finished.id)
        listed = steep.list_jobs(experiment="iris", status="succeeded", tags={"team": "tests"})
        every_job = list(steep.iter_jobs(experiment="iris"))

        assert dataset["task"] == "classification"
        assert finished.status == "succeeded"
        assert finished.stop_reason == "completed"
        assert finished.progress.epoch == 8
        assert finished.best is not None and finished.best.monitor == "val_loss"
        assert [change.status for change in finished.transitions] == [
            "queued",
            "running",
            "succeeded",
        ]
        assert columns["epoch"] == list(range(1, 9))
        assert len(columns["val_loss"]) == 8
        assert later["epoch"] == [7, 8]
        assert weights_path.read_bytes().startswith(b"PK")
        assert json_path.read_text().startswith("{")
        assert any(name.endswith("weight") or "w" in name for name in arrays)
        assert list(local_model.predict(np.array(rows))) == served.predictions
        assert len(served.outputs) == 3 and len(served.outputs[0]) == 3
        assert "loss" in str(trace)
        assert [item.id for item in listed.items] == [finished.id]
        assert [item.id for item in every_job] == [finished.id]

        # Cancel a running job; a second cancel is a conflict.
        long_job = steep.submit(LONG_SPEC)
        wait_until_running(steep, long_job.id)
        steep.cancel(long_job.id)
        cancelled = steep.wait(long_job.id, poll_seconds=0.05, timeout=30)
        assert cancelled.status == "cancelled"
        assert cancelled.stop_reason == "cancelled"
        with pytest.raises(ConflictError):
            steep.cancel(long_job.id)

        # A sweep, its leaderboard, and the experiment summary.
        sweep = steep.submit_sweep(
            {
                "name": "lr",
                "base": IRIS_SPEC,
                "parameters": {"optimizer.lr": {"values": [0.05, 0.0001]}},
                "max_parallel": 2,
            }
        )
        ended = steep.wait_sweep(sweep.id, poll_seconds=0.1, timeout=60)
        board = steep.leaderboard(sweep.id)
        sweeps = steep.list_sweeps(status="succeeded")
        experiments = steep.list_experiments()
        with pytest.raises(ConflictError):
            steep.cancel_sweep(sweep.id)

        assert isinstance(ended, Sweep)
        assert ended.status == "succeeded"
        assert ended.counts == {"succeeded": 2}
        assert [entry.parameters["optimizer.lr"] for entry in board] == [0.05, 0.0001]
        assert board[0].value < board[1].value
        assert [item.id for item in sweeps.items] == [sweep.id]
        iris = next(item for item in experiments.items if item.name == "iris")
        assert iris.counts == {"succeeded": 3, "cancelled": 1}
        assert iris.best is not None
        assert iris.best.value == min(
            job.best.value for job in steep.iter_jobs(status="succeeded") if job.best
        )

        # Cancel a sweep whose one trial is running: the others never start.
        slow = steep.submit_sweep(
            {
                "base": LONG_SPEC,
                "parameters": {"optimizer.lr": {"values": [0.01, 0.02, 0.03]}},
                "max_parallel": 1,
            }
        )
        running_trial = slow.trials[0].job_id
        assert running_trial is not None
        wait_until_running(steep, running_trial)
        steep.cancel_sweep(slow.id)
        steep.wait(running_trial, poll_seconds=0.05, timeout=30)
        after_cancel = steep.get_sweep(slow.id)
        assert after_cancel.status == "cancelled"
        assert after_cancel.counts == {"cancelled": 3}

        # Deleting: the job, then the dataset no job uses any more.
        steep.delete(finished.id)
        with pytest.raises(NotFoundError):
            steep.get(finished.id)
        steep.delete_dataset(dataset["id"])
        with pytest.raises(NotFoundError):
            steep.get_dataset(dataset["id"])


def test_history_as_frame(service: LiveService) -> None:
    """history(as_frame=True) is a DataFrame indexed by epoch with the same values."""
    pandas = pytest.importorskip("pandas")
    with Client(service.url, service.api_key) as steep:
        job = steep.wait(steep.submit(IRIS_SPEC).id, poll_seconds=0.05, timeout=60)
        columns = steep.history(job.id)
        frame = steep.history(job.id, as_frame=True)

    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.index) == columns["epoch"]
    assert list(frame["train_loss"]) == columns["train_loss"]


class DropFirstPostResponse(httpx.BaseTransport):
    """Forward every request, but lose the response of the first POST after the server
    processed it, as a connection that drops at the wrong moment would."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method != "POST":
            return response
        self.posts += 1
        if self.posts > 1:
            return response
        response.read()
        response.close()
        raise httpx.RemoteProtocolError("server disconnected without a response", request=request)

    def close(self) -> None:
        self.inner.close()


def test_retried_submit_makes_one_job(service: LiveService) -> None:
    """A submit whose response was lost is retried with the same key and makes one job."""
    transport = DropFirstPostResponse()

    with Client(service.url, service.api_key, transport=transport) as steep:
        job = steep.submit(IRIS_SPEC)
    with Client(service.url, service.api_key) as steep:
        jobs = steep.list_jobs().items

    assert transport.posts == 2
    assert [item.id for item in jobs] == [job.id]


def test_retried_sweep_submit_makes_one_sweep(service: LiveService) -> None:
    """A sweep submit whose response was lost is retried and makes one sweep and its jobs."""
    transport = DropFirstPostResponse()
    body = {"base": IRIS_SPEC, "parameters": {"optimizer.lr": {"values": [0.01, 0.02]}}}

    with Client(service.url, service.api_key, transport=transport) as steep:
        sweep = steep.submit_sweep(body)
    with Client(service.url, service.api_key) as steep:
        sweeps = steep.list_sweeps().items
        jobs = steep.list_jobs().items

    assert transport.posts == 2
    assert [item.id for item in sweeps] == [sweep.id]
    assert len(jobs) == 2


def test_error_responses_raise_typed_errors(service: LiveService) -> None:
    """404, 422 and 409 responses raise their own SteepError subclasses with the details."""
    bad_spec = {**IRIS_SPEC, "optimizer": {"type": "adam", "lr": -1}}

    with Client(service.url, service.api_key) as steep:
        with pytest.raises(NotFoundError) as missing:
            steep.get("no-such-job")
        with pytest.raises(ValidationError) as invalid:
            steep.submit(bad_spec)
        with pytest.raises(ValidationError) as bad_sweep:
            steep.submit_sweep(
                {"base": IRIS_SPEC, "parameters": {"optimizer.momentum": {"values": [0.9]}}}
            )
        with pytest.raises(ConflictError) as reused:
            steep.submit(IRIS_SPEC, idempotency_key="same")
            steep.submit({**IRIS_SPEC, "name": "other"}, idempotency_key="same")
        with pytest.raises(NotFoundError):
            steep.get_sweep("no-such-sweep")

    assert missing.value.status == 404
    assert "no-such-job" in missing.value.detail
    assert invalid.value.status == 422
    assert invalid.value.errors[0]["loc"] == ["body", "optimizer", "lr"]
    assert "optimizer.momentum" in bad_sweep.value.detail
    assert reused.value.status == 409
