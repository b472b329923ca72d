"""Workers that die: SIGKILL in the middle of an epoch, a crash right after the claim, and a
job whose every attempt crashes its worker."""

from __future__ import annotations

import re
import signal
import time

import pytest
from fastapi import FastAPI

from services.api.app import create_app
from services.worker.enqueue import enqueue_job
from tests.services.auth import client_for
from tests.services.conftest import Configure
from tests.services.durability.checks import (
    DISTRIBUTED_ONLY,
    FAST_RECOVERY,
    assert_each_epoch_once,
    assert_weights_equal,
    claims,
    digits_spec,
    digits_spec_lasting,
    reference_weights,
    wait_for_job,
    wait_for_status,
)
from tests.services.durability.processes import Processes, Worker
from tests.services.worker.helpers import create_job, read_history, read_job, read_transitions

pytestmark = pytest.mark.slow


def _resume_epoch(reason: str | None) -> int:
    match = re.fullmatch(r"resumed from the checkpoint at epoch (\d+)", reason or "")
    assert match is not None, f"not a resume: {reason!r}"
    return int(match.group(1))


def test_killed_worker_job_resumes_bit_for_bit(configure: Configure, processes: Processes) -> None:
    """After SIGKILL mid-epoch, another worker resumes the job to the uninterrupted weights.

    The job's public transitions show both attempts, their workers and reasons.
    """
    settings = configure(**FAST_RECOVERY)
    spec = digits_spec_lasting(0.5)
    expected = reference_weights(spec)
    processes.worker("worker-a")
    processes.worker("worker-b")
    processes.reaper()
    job_id = create_job(settings, spec)

    assert enqueue_job(job_id)
    wait_for_job(settings, job_id, processes, lambda job: job.epoch >= 8)
    killed = processes.holder(job_id)
    killed.send(signal.SIGKILL)
    wait_for_status(settings, job_id, "succeeded", processes)

    assert killed.wait(5) == -signal.SIGKILL
    assert_weights_equal(settings, job_id, expected)
    assert_each_epoch_once(settings, job_id, spec["training"]["epochs"])
    first, second = claims(settings, job_id)
    assert (first.attempt, second.attempt) == (1, 2)
    assert killed.holds(first.worker_id)
    assert not killed.holds(second.worker_id)
    resumed_at = _resume_epoch(second.reason)
    assert resumed_at >= 8
    attempts = [row.attempt for row in read_history(settings, job_id)]
    assert attempts == [1] * resumed_at + [2] * (spec["training"]["epochs"] - resumed_at)
    _check_public_transitions(create_app(settings), job_id, killed)


def _check_public_transitions(app: FastAPI, job_id: str, killed: Worker) -> None:
    """GET /v1/jobs/{id} lists each attempt with its worker, the reason and the time, in order."""
    with client_for(app) as client:
        response = client.get(f"/v1/jobs/{job_id}")

    assert response.status_code == 200, response.text
    transitions = response.json()["transitions"]
    assert [(t["status"], t["attempt"]) for t in transitions] == [
        ("queued", 0),
        ("running", 1),
        ("queued", 1),
        ("running", 2),
        ("succeeded", 2),
    ]
    first_worker, second_worker = transitions[1]["worker_id"], transitions[3]["worker_id"]
    assert killed.holds(first_worker)
    assert transitions[2]["reason"] == f"lease expired on worker {first_worker}"
    assert transitions[2]["worker_id"] == first_worker
    assert second_worker not in (None, first_worker)
    assert transitions[4]["worker_id"] == second_worker
    assert transitions[4]["reason"] == "completed"
    times = [t["at"] for t in transitions]
    assert times == sorted(times)


@DISTRIBUTED_ONLY
def test_crash_before_first_heartbeat_recovered(configure: Configure, processes: Processes) -> None:
    """A worker that dies right after its claim leaves a lease that the reaper recovers."""
    settings = configure(**FAST_RECOVERY)
    spec = digits_spec(3)
    crashing = processes.worker("crashing", fault_exit_at_epoch=0)
    processes.reaper()
    job_id = create_job(settings, spec)

    assert enqueue_job(job_id)
    exit_code = crashing.wait(60)
    after_crash = read_job(settings, job_id)
    processes.worker("healthy")
    wait_for_status(settings, job_id, "succeeded", processes)

    assert exit_code == 1, crashing.output()
    assert (after_crash.status, after_crash.attempt, after_crash.epoch) == ("running", 1, 0)
    first, second = claims(settings, job_id)
    assert crashing.holds(first.worker_id)
    assert not crashing.holds(second.worker_id)
    assert second.reason == f"claimed by worker {second.worker_id}"
    assert_each_epoch_once(settings, job_id, 3)
    assert_weights_equal(settings, job_id, reference_weights(spec))


@DISTRIBUTED_ONLY
def test_job_crashing_every_attempt_fails_worker_lost(
    configure: Configure, processes: Processes
) -> None:
    """A job that kills its worker process on every attempt fails as worker_lost, then stays."""
    settings = configure(**FAST_RECOVERY, max_attempts=3)
    # The prefork pool replaces a child that died, like a supervisor restarting a worker.
    worker = processes.worker("crashing", pool="prefork", fault_exit_at_epoch=2)
    processes.reaper()
    job_id = create_job(settings, digits_spec(5))

    assert enqueue_job(job_id)
    wait_for_status(settings, job_id, "failed", processes, timeout=90)
    transitions = read_transitions(settings, job_id)
    # Only a resent message could start a fourth attempt, and the reaper resends a
    # queued job's message after requeue_after_seconds.
    time.sleep(settings.requeue_after_seconds + 2 * settings.reaper_interval_seconds)

    job = read_job(settings, job_id)
    assert (job.status, job.stop_reason, job.attempt) == ("failed", "worker_lost", 3)
    assert [(t.status, t.attempt) for t in transitions] == [
        ("queued", 0),
        ("running", 1),
        ("queued", 1),
        ("running", 2),
        ("queued", 2),
        ("running", 3),
        ("failed", 3),
    ]
    assert len(read_transitions(settings, job_id)) == len(transitions)
    assert worker.is_running(), worker.output()
    assert worker.output().count("fault_exit_at_epoch is 2") == 3
