"""Time limits: a job stopped by training.max_seconds or by the server's max_job_seconds
succeeds with stop_reason time_limit and the weights of its last complete epoch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import core
from core.paramfile import load_model
from services.worker.runner import run_job
from tests.services.conftest import Configure
from tests.services.worker.helpers import (
    create_job,
    long_spec,
    read_history,
    read_job,
    read_weights,
)


def _with_training(spec: dict[str, Any], **training: Any) -> dict[str, Any]:
    return {**spec, "training": {**spec["training"], **training}}


@pytest.mark.parametrize("limit_from", ["spec", "server"])
def test_time_limit_keeps_last_complete_epoch(configure: Configure, limit_from: str) -> None:
    """The stored weights equal an uninterrupted run of exactly the epochs completed."""
    spec = long_spec()
    if limit_from == "spec":
        settings = configure()
        spec = _with_training(spec, max_seconds=0.5)
    else:
        settings = configure(max_job_seconds=0.5)
    job_id = create_job(settings, spec)

    outcome = run_job(job_id, worker_id="test-worker", settings=settings)

    assert outcome == "succeeded"
    job = read_job(settings, job_id)
    assert (job.status, job.stop_reason) == ("succeeded", "time_limit")
    assert job.stop_message == "training reached max_seconds=0.5"
    assert 1 <= job.epoch < 5000
    history = read_history(settings, job_id)
    assert [row.epoch for row in history] == list(range(1, job.epoch + 1))
    assert job.metrics == history[-1].values
    data = core.load_builtin("digits")
    complete_epochs = _with_training(long_spec(), epochs=job.epoch)
    expected = core.fit(complete_epochs, data.x, data.y, classes=data.classes).params
    stored_bytes = read_weights(settings, job_id)
    assert stored_bytes is not None
    stored = load_model(stored_bytes).parameters()
    for name, value in expected.items():
        np.testing.assert_array_equal(stored[name], value, err_msg=name)
