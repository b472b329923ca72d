"""Messages delivered more than once, also after Redis's visibility timeout, train a job once."""

from __future__ import annotations

import time

import pytest
import redis

from services.worker.celery_app import celery_app
from services.worker.enqueue import enqueue_job
from tests.services.conftest import Configure
from tests.services.durability.checks import (
    DISTRIBUTED_ONLY,
    FAST_RECOVERY,
    assert_each_epoch_once,
    assert_weights_equal,
    claims,
    digits_spec,
    reference_weights,
    wait_for_job,
    wait_for_status,
)
from tests.services.durability.processes import Processes
from tests.services.worker.helpers import create_job, wait_for

pytestmark = [DISTRIBUTED_ONLY, pytest.mark.slow]

RECEIVED = "] received"
DROPPED = "dropped its message"


def _restore_unacknowledged() -> None:
    """Run kombu's sweep that requeues messages unacknowledged past the visibility timeout.

    Workers run it only about every 100 s; the test runs it once, right away.
    """
    with celery_app().connection_for_write() as connection:
        connection.default_channel.qos.restore_visible(interval=1)


def test_redelivered_messages_train_once(configure: Configure, processes: Processes) -> None:
    """A duplicate message, and one redelivered after a 1 s visibility timeout, are dropped."""
    settings = configure(
        **{**FAST_RECOVERY, "requeue_after_seconds": 60.0},
        broker_visibility_timeout_seconds=1.0,
    )
    # Long enough to still be training 1.5 s after its first epoch on a fast machine.
    spec = digits_spec(300)
    expected = reference_weights(spec)
    workers = [processes.worker("worker-a"), processes.worker("worker-b")]
    broker = redis.Redis.from_url(settings.resolved_broker_url)
    job_id = create_job(settings, spec)

    def dropped() -> int:
        return sum(worker.output().count(DROPPED) for worker in workers)

    assert enqueue_job(job_id)
    wait_for_job(settings, job_id, processes, lambda job: job.epoch >= 1)
    time.sleep(1.5 * settings.broker_visibility_timeout_seconds)
    # The solo worker acknowledges the message only when the job returns.
    unacknowledged_while_training = broker.hlen("unacked")
    _restore_unacknowledged()
    wait_for(lambda: dropped() == 1, timeout=30)
    assert enqueue_job(job_id)
    wait_for(lambda: dropped() == 2, timeout=30)
    wait_for_status(settings, job_id, "succeeded", processes)

    assert unacknowledged_while_training == 1
    assert len(claims(settings, job_id)) == 1
    logs = [worker.output() for worker in workers]
    assert sum(log.count(RECEIVED) for log in logs) == 3, processes.logs()
    assert_each_epoch_once(settings, job_id, 300)
    assert_weights_equal(settings, job_id, expected)
