"""Broker and database outages in the middle of a run: every job still succeeds, once."""

from __future__ import annotations

import time

import pytest

from services.worker.enqueue import enqueue_job
from tests.services.conftest import Configure
from tests.services.durability.checks import (
    DISTRIBUTED_ONLY,
    FAST_RECOVERY,
    assert_each_epoch_once,
    assert_weights_equal,
    claims,
    digits_spec_lasting,
    reference_weights,
    wait_for_job,
    wait_for_status,
)
from tests.services.durability.private_services import PrivatePostgres, PrivateRedis
from tests.services.durability.processes import Processes
from tests.services.worker.helpers import TEA_SPEC, create_job, read_job

pytestmark = [DISTRIBUTED_ONLY, pytest.mark.slow]

# How long each server stays down.
OUTAGE_SECONDS = 3.0


def test_redis_restart_loses_no_job(
    configure: Configure, processes: Processes, private_redis: PrivateRedis
) -> None:
    """Redis restarted empty while two jobs train and two wait: all four succeed, once each.

    The restart drops the waiting jobs' messages, and a job submitted during the
    outage cannot be sent at all; the reaper resends all three.
    """
    settings = configure(**FAST_RECOVERY, broker_url=private_redis.url)
    spec = digits_spec_lasting(1.0)
    expected = reference_weights(spec)
    processes.worker("worker-a")
    processes.worker("worker-b")
    processes.reaper()
    training = [create_job(settings, spec) for _ in range(2)]
    waiting = [create_job(settings, TEA_SPEC) for _ in range(2)]

    for job_id in training:
        assert enqueue_job(job_id)
    for job_id in training:
        wait_for_job(settings, job_id, processes, lambda job: job.epoch >= 3)
    for job_id in waiting:
        assert enqueue_job(job_id)
    private_redis.stop()
    submitted_during_outage = create_job(settings, TEA_SPEC)
    sent_during_outage = enqueue_job(submitted_during_outage)
    time.sleep(OUTAGE_SECONDS)
    private_redis.start()
    all_jobs = [*training, *waiting, submitted_during_outage]
    for job_id in all_jobs:
        wait_for_status(settings, job_id, "succeeded", processes, timeout=120)

    assert not sent_during_outage
    for job_id in all_jobs:
        assert len(claims(settings, job_id)) == 1
        assert read_job(settings, job_id).attempt == 1
    for job_id in training:
        assert_each_epoch_once(settings, job_id, spec["training"]["epochs"])
        assert_weights_equal(settings, job_id, expected)


def test_postgres_restart_loses_nothing(
    configure: Configure, processes: Processes, private_postgres: PrivatePostgres
) -> None:
    """PostgreSQL down for a few seconds mid-run: the job keeps its lease and its epochs."""
    settings = configure(
        **{**FAST_RECOVERY, "lease_seconds": 10.0}, database_url=private_postgres.url
    )
    spec = digits_spec_lasting(1.0)
    expected = reference_weights(spec)
    worker = processes.worker("worker")
    processes.reaper()
    job_id = create_job(settings, spec)

    assert enqueue_job(job_id)
    wait_for_job(settings, job_id, processes, lambda job: job.epoch >= 5)
    private_postgres.stop()
    time.sleep(OUTAGE_SECONDS)
    private_postgres.start()
    wait_for_status(settings, job_id, "succeeded", processes, timeout=120)

    output = worker.output()
    assert "flush 1 failed" in output or "lease renewal 1 failed" in output, output
    assert len(claims(settings, job_id)) == 1
    assert read_job(settings, job_id).attempt == 1
    assert_each_epoch_once(settings, job_id, spec["training"]["epochs"])
    assert_weights_equal(settings, job_id, expected)
