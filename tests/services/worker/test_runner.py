"""run_job against a real database: results, history, fencing, cancels, errors and resumes."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import core
from core.paramfile import load_model
from services.settings import Settings
from services.store import runs
from services.worker.runner import progress_of, run_job
from tests.services.conftest import Configure
from tests.services.worker.helpers import (
    DIGITS_SPEC,
    TEA_SPEC,
    create_job,
    long_spec,
    read_history,
    read_job,
    read_transitions,
    read_weights,
    update_job,
    wait_for,
)

WORKER = "test-worker"


class _RunInThread:
    """Runs run_job in a thread so that the test can change the row while it trains."""

    def __init__(self, job_id: str, settings: Settings) -> None:
        self.result: str | None = None
        self.thread = threading.Thread(target=self._run, args=(job_id, settings), daemon=True)
        self.thread.start()

    def _run(self, job_id: str, settings: Settings) -> None:
        self.result = run_job(job_id, worker_id=WORKER, settings=settings)

    def join(self, timeout: float = 20.0) -> str | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run_job did not return in time"
        return self.result


class _ShutdownAfter:
    """A stand-in for the shutdown event that reports set after ``n_checks`` batches."""

    def __init__(self, n_checks: int) -> None:
        self.remaining = n_checks

    def is_set(self) -> bool:
        self.remaining -= 1
        return self.remaining < 0


def _weights(settings: Settings, job_id: str) -> dict[str, np.ndarray]:
    data = read_weights(settings, job_id)
    assert data is not None, "no weights were stored"
    return load_model(data).parameters()


def _uninterrupted_weights(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    data = core.load_builtin(spec["dataset"])
    return core.fit(spec, data.x, data.y, classes=data.classes).params


def test_tea_job_records_exact_values(settings: Settings) -> None:
    """The one-weight job records loss 81 and stores w = 0.86."""
    job_id = create_job(settings, TEA_SPEC)

    outcome = run_job(job_id, worker_id=WORKER, settings=settings)

    assert outcome == "succeeded"
    job = read_job(settings, job_id)
    assert (job.status, job.stop_reason, job.attempt, job.epoch) == ("succeeded", "completed", 1, 1)
    assert job.finished_at is not None and job.started_at is not None
    assert job.lease_expires_at is None
    assert job.metrics["train_loss"] == 81.0
    history = read_history(settings, job_id)
    assert [row.values["train_loss"] for row in history] == [81.0]
    assert [row.attempt for row in history] == [1]
    weight = _weights(settings, job_id)["dense_0.weight"]
    np.testing.assert_allclose(weight, [[0.86]], rtol=0, atol=1e-12)
    transitions = read_transitions(settings, job_id)
    assert [t.status for t in transitions] == ["queued", "running", "succeeded"]
    assert transitions[1].worker_id == WORKER


def test_end_log_message_has_no_trailing_space(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The final-status line ends at its closing bracket, or with ": " and the message."""
    succeeded = create_job(settings, TEA_SPEC)
    failed = create_job(settings, {**TEA_SPEC, "dataset": "builtin:nope"})

    with caplog.at_level("INFO", logger="services.worker.runner"):
        run_job(succeeded, worker_id=WORKER, settings=settings)
        run_job(failed, worker_id=WORKER, settings=settings)

    ends = [message for message in caplog.messages if "(attempt 1, worker" in message]
    assert f"job {succeeded} succeeded, completed (attempt 1, worker {WORKER})" in ends
    (failure,) = [message for message in ends if message.startswith(f"job {failed} failed")]
    assert failure.startswith(f"job {failed} failed, error (attempt 1, worker {WORKER}): ")
    assert all(message == message.rstrip() for message in ends)


def test_digits_job_history_complete(settings: Settings) -> None:
    """A digits job succeeds with one history row per epoch, in order, and good accuracy."""
    job_id = create_job(settings, DIGITS_SPEC)

    outcome = run_job(job_id, worker_id=WORKER, settings=settings)

    assert outcome == "succeeded"
    job = read_job(settings, job_id)
    assert job.epoch == 20
    assert job.metrics["val_accuracy"] >= 0.95
    assert {"lr", "epoch_seconds", "grad_norm.dense_0", "grad_norm.dense_2"} <= set(job.metrics)
    assert "epoch" not in job.metrics
    assert job.monitor == "val_loss"
    assert job.best_epoch is not None and job.best_value is not None
    assert job.eta_seconds == 0.0
    history = read_history(settings, job_id)
    assert [row.epoch for row in history] == list(range(1, 21))
    assert history[-1].values == job.metrics
    # Flushes during training bumped the version beyond the claim and the finish.
    assert job.version > 2


def test_digits_job_weights_match_core_fit(settings: Settings) -> None:
    """The stored parameters equal core.fit's for the same spec, bit for bit."""
    job_id = create_job(settings, DIGITS_SPEC)

    run_job(job_id, worker_id=WORKER, settings=settings)

    stored = _weights(settings, job_id)
    expected = _uninterrupted_weights(DIGITS_SPEC)
    assert stored.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(stored[name], expected[name], err_msg=name)


def test_duplicate_message_does_nothing(settings: Settings) -> None:
    """A second message for a finished job neither claims nor writes anything."""
    job_id = create_job(settings, TEA_SPEC)
    run_job(job_id, worker_id=WORKER, settings=settings)
    before = read_job(settings, job_id)

    outcome = run_job(job_id, worker_id="another-worker", settings=settings)

    assert outcome == "skipped"
    after = read_job(settings, job_id)
    assert (after.version, after.attempt, after.status) == (
        before.version,
        before.attempt,
        before.status,
    )
    assert len(read_history(settings, job_id)) == 1
    assert len(read_transitions(settings, job_id)) == 3


def test_fenced_write_stops_training(settings: Settings) -> None:
    """When another attempt takes the job, the worker stops and writes nothing more."""
    job_id = create_job(settings, long_spec())
    run = _RunInThread(job_id, settings)
    wait_for(lambda: read_job(settings, job_id).epoch >= 2)

    update_job(settings, job_id, attempt=7)
    outcome = run.join()

    assert outcome == "lost"
    job = read_job(settings, job_id)
    assert (job.status, job.attempt, job.stop_reason) == ("running", 7, None)
    history = read_history(settings, job_id)
    assert [row.epoch for row in history] == list(range(1, job.epoch + 1))
    assert read_weights(settings, job_id) is None
    assert [t.status for t in read_transitions(settings, job_id)] == ["queued", "running"]


def test_cancel_request_keeps_history(settings: Settings) -> None:
    """A cancel request stops the job as cancelled, with its epochs and weights kept."""
    job_id = create_job(settings, long_spec())
    run = _RunInThread(job_id, settings)
    wait_for(lambda: read_job(settings, job_id).epoch >= 2)

    update_job(settings, job_id, cancel_requested=True)
    outcome = run.join()

    assert outcome == "cancelled"
    job = read_job(settings, job_id)
    assert (job.status, job.stop_reason) == ("cancelled", "cancelled")
    assert job.epoch >= 2
    history = read_history(settings, job_id)
    assert [row.epoch for row in history] == list(range(1, job.epoch + 1))
    assert read_weights(settings, job_id) is not None
    assert [t.status for t in read_transitions(settings, job_id)][-1] == "cancelled"


def test_unknown_dataset_fails_with_error(settings: Settings) -> None:
    """A dataset id that does not exist ends the job failed, with the error recorded."""
    job_id = create_job(settings, {**TEA_SPEC, "dataset": "builtin:nope"})

    outcome = run_job(job_id, worker_id=WORKER, settings=settings)

    assert outcome == "failed"
    job = read_job(settings, job_id)
    assert (job.status, job.stop_reason, job.error_type) == ("failed", "error", "NotFound")
    assert "nope" in (job.error_message or "")
    assert read_weights(settings, job_id) is None


def test_model_data_mismatch_fails_with_error(settings: Settings) -> None:
    """A last layer with the wrong number of units fails with the engine's ValueError."""
    spec = {**DIGITS_SPEC, "model": {"layers": [{"type": "dense", "units": 3}]}}
    job_id = create_job(settings, spec)

    run_job(job_id, worker_id=WORKER, settings=settings)

    job = read_job(settings, job_id)
    assert (job.status, job.stop_reason, job.error_type) == ("failed", "error", "ValueError")
    assert "units" in (job.error_message or "")


def test_diverging_job_fails_as_diverged(settings: Settings) -> None:
    """A learning rate that blows up ends the job failed with stop_reason diverged."""
    spec = {
        **TEA_SPEC,
        "optimizer": {"type": "sgd", "lr": 10.0},
        "training": {**TEA_SPEC["training"], "epochs": 500, "dtype": "float32"},
    }
    job_id = create_job(settings, spec)

    outcome = run_job(job_id, worker_id=WORKER, settings=settings)

    assert outcome == "failed"
    job = read_job(settings, job_id)
    assert (job.status, job.stop_reason, job.error_type) == ("failed", "diverged", None)
    assert "epoch" in (job.stop_message or "")
    history = read_history(settings, job_id)
    assert [row.epoch for row in history] == list(range(1, job.epoch + 1))


def test_max_job_seconds_caps_training(configure: Configure) -> None:
    """The server's max_job_seconds stops a long job as a successful time_limit."""
    settings = configure(max_job_seconds=0.5)
    job_id = create_job(settings, long_spec())

    outcome = run_job(job_id, worker_id=WORKER, settings=settings)

    assert outcome == "succeeded"
    job = read_job(settings, job_id)
    assert job.stop_reason == "time_limit"
    assert "max_seconds=0.5" in (job.stop_message or "")
    assert 1 <= job.epoch < 5000


def test_released_job_resumes_bit_for_bit(settings: Settings) -> None:
    """A job released at shutdown resumes from its checkpoint to the uninterrupted weights."""
    spec = {**DIGITS_SPEC, "training": {**DIGITS_SPEC["training"], "epochs": 6}}
    job_id = create_job(settings, spec)

    first = run_job(job_id, worker_id=WORKER, settings=settings, shutdown=_ShutdownAfter(100))
    released = read_job(settings, job_id)
    second = run_job(job_id, worker_id="second-worker", settings=settings)

    assert first == "released"
    assert (released.status, released.worker_id) == ("queued", None)
    assert 1 <= released.epoch < 6
    assert second == "succeeded"
    job = read_job(settings, job_id)
    assert (job.attempt, job.epoch) == (2, 6)
    history = read_history(settings, job_id)
    assert [row.epoch for row in history] == list(range(1, 7))
    assert [t.status for t in read_transitions(settings, job_id)] == [
        "queued",
        "running",
        "queued",
        "running",
        "succeeded",
    ]
    stored = _weights(settings, job_id)
    for name, expected in _uninterrupted_weights(spec).items():
        np.testing.assert_array_equal(stored[name], expected, err_msg=name)


def test_resume_drops_history_after_checkpoint(settings: Settings) -> None:
    """Epochs a dead attempt recorded after its checkpoint are trained again, once each."""
    spec = {**DIGITS_SPEC, "training": {**DIGITS_SPEC["training"], "epochs": 6}}
    job_id = create_job(settings, spec)
    claim = runs.claim(job_id, "dead-worker", 10.0, database_url=settings.resolved_database_url)
    assert claim is not None
    data = core.load_builtin("digits")
    trainer = core.make_trainer(spec, data.x, data.y, classes=data.classes)
    for _ in range(2):
        trainer._run_epoch()
    checkpoint = trainer.state_dict().to_bytes()
    runs.flush(claim, trainer.history, progress_of(trainer, 6), checkpoint)
    fake = [{"epoch": epoch, "train_loss": -1.0} for epoch in (3, 4)]
    runs.flush(claim, fake, runs.Progress(4, {"train_loss": -1.0}, None, None, None, None))
    update_job(settings, job_id, status="queued")

    outcome = run_job(job_id, worker_id=WORKER, settings=settings)

    assert outcome == "succeeded"
    history = read_history(settings, job_id)
    assert [row.epoch for row in history] == list(range(1, 7))
    assert [row.attempt for row in history] == [1, 1, 2, 2, 2, 2]
    assert all(row.values["train_loss"] > 0 for row in history)
    stored = _weights(settings, job_id)
    for name, expected in _uninterrupted_weights(spec).items():
        np.testing.assert_array_equal(stored[name], expected, err_msg=name)
