"""Specs, settings and checks that the durability tests share."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import core
from core.paramfile import load_model
from services.settings import Settings
from services.store.models import Job, Transition
from tests.services.durability.processes import Processes
from tests.services.worker.helpers import (
    DIGITS_SPEC,
    read_history,
    read_job,
    read_transitions,
    read_weights,
)

# Runs a test only against PostgreSQL and Redis.
DISTRIBUTED_ONLY = pytest.mark.parametrize(
    "mode", [pytest.param("distributed", marks=pytest.mark.distributed)], indirect=True
)

# Short leases and a fast reaper, so that a lost worker's job moves on within seconds.
# A checkpoint at every epoch end lets a resumed job skip the epochs already done.
FAST_RECOVERY: dict[str, Any] = {
    "lease_seconds": 2.0,
    "reaper_interval_seconds": 0.5,
    "flush_interval_seconds": 0.1,
    "checkpoint_interval_seconds": 0.0,
    "requeue_after_seconds": 2.0,
}


def digits_spec(epochs: int) -> dict[str, Any]:
    """The digits MLP (dropout, Adam, validation) for ``epochs`` epochs of 3 to 50 ms each,
    by machine and by how often the worker checkpoints."""
    return {**DIGITS_SPEC, "training": {**DIGITS_SPEC["training"], "epochs": epochs}}


def digits_spec_lasting(seconds: float) -> dict[str, Any]:
    """The digits MLP with enough epochs that a worker trains it for at least ``seconds``.

    The epoch count comes from timing ``core.fit`` in this process, so a test that
    interrupts a job mid-run works on fast and slow CPUs alike. A worker is never
    faster than ``core.fit``: it trains the same way and also writes to the database.
    """
    return digits_spec(max(20, math.ceil(seconds / _digits_epoch_seconds())))


@functools.cache
def _digits_epoch_seconds() -> float:
    epochs = 20
    started = time.perf_counter()
    reference_weights(digits_spec(epochs))
    return (time.perf_counter() - started) / epochs


def reference_weights(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """Train ``spec`` with core.fit in this process, on one BLAS thread like the workers."""
    data = core.load_builtin(spec["dataset"])
    with threadpool_limits(limits=1):
        return core.fit(spec, data.x, data.y, classes=data.classes).params


def assert_weights_equal(settings: Settings, job_id: str, expected: dict[str, np.ndarray]) -> None:
    """Check the job's stored parameters against ``expected``, bit for bit."""
    data = read_weights(settings, job_id)
    assert data is not None, f"job {job_id} has no stored weights"
    stored = load_model(data).parameters()
    assert stored.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(stored[name], value, err_msg=name)


def assert_each_epoch_once(settings: Settings, job_id: str, epochs: int) -> None:
    """Check that the history has epochs 1..epochs, each once, in order."""
    history = read_history(settings, job_id)
    assert [row.epoch for row in history] == list(range(1, epochs + 1))


def claims(settings: Settings, job_id: str) -> list[Transition]:
    """Return the job's transitions to running: one per training attempt."""
    return [t for t in read_transitions(settings, job_id) if t.status == "running"]


def wait_for_job(
    settings: Settings,
    job_id: str,
    processes: Processes,
    condition: Callable[[Job], bool],
    *,
    timeout: float = 60.0,
) -> None:
    """Wait until ``condition(job_row)`` is true; after ``timeout`` s, fail with the logs."""
    deadline = time.monotonic() + timeout
    while not condition(read_job(settings, job_id)):
        if time.monotonic() > deadline:
            job = read_job(settings, job_id)
            raise AssertionError(
                f"job {job_id} did not reach the expected state within {timeout} s: "
                f"status {job.status}, attempt {job.attempt}, epoch {job.epoch}\n"
                f"{processes.logs()}"
            )
        time.sleep(0.05)


def wait_for_status(
    settings: Settings, job_id: str, status: str, processes: Processes, *, timeout: float = 60.0
) -> None:
    wait_for_job(settings, job_id, processes, lambda job: job.status == status, timeout=timeout)
