"""The reaper against a real database: expired leases, lost workers and lost messages."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import update

from services.settings import Settings
from services.store import runs
from services.store.db import session_scope
from services.store.models import Transition, utcnow
from services.worker.reaper import reap_once, run_reaper
from services.worker.runner import run_job
from tests.services.conftest import Configure
from tests.services.worker.helpers import (
    TEA_SPEC,
    age_job,
    create_job,
    read_job,
    read_transitions,
    update_job,
)


class _Outbox:
    """Collects the job ids the reaper would send, in place of the broker."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, job_id: str) -> bool:
        self.sent.append(job_id)
        return True


def _claim_and_expire(settings: Settings, job_id: str, worker_id: str) -> runs.Claim:
    claim = runs.claim(job_id, worker_id, 10.0, database_url=settings.resolved_database_url)
    assert claim is not None
    update_job(settings, job_id, lease_expires_at=utcnow() - timedelta(seconds=1))
    return claim


def test_expired_lease_requeued(settings: Settings) -> None:
    """A running job whose lease expired goes back to queued and gets a new message."""
    job_id = create_job(settings, TEA_SPEC)
    _claim_and_expire(settings, job_id, "worker-a")
    outbox = _Outbox()

    report = reap_once(settings, enqueue=outbox)

    assert report.requeued == [job_id]
    assert outbox.sent == [job_id]
    job = read_job(settings, job_id)
    assert (job.status, job.worker_id, job.lease_expires_at) == ("queued", None, None)
    last = read_transitions(settings, job_id)[-1]
    assert (last.status, last.attempt) == ("queued", 1)
    assert last.reason == "lease expired on worker worker-a"


def test_live_lease_left_alone(settings: Settings) -> None:
    """A running job whose lease has not expired is not touched."""
    job_id = create_job(settings, TEA_SPEC)
    runs.claim(job_id, "worker-a", 10.0, database_url=settings.resolved_database_url)
    version = read_job(settings, job_id).version

    report = reap_once(settings, enqueue=_Outbox())

    assert report.requeued == report.failed == report.resent == []
    job = read_job(settings, job_id)
    assert (job.status, job.version) == ("running", version)


def test_lost_job_fails_after_max_attempts(configure: Configure) -> None:
    """After max_attempts expired leases the job fails with stop_reason worker_lost."""
    settings = configure(max_attempts=2)
    job_id = create_job(settings, TEA_SPEC)
    outbox = _Outbox()
    _claim_and_expire(settings, job_id, "worker-a")
    first = reap_once(settings, enqueue=outbox)
    _claim_and_expire(settings, job_id, "worker-b")

    second = reap_once(settings, enqueue=outbox)

    assert first.requeued == [job_id]
    assert second.failed == [job_id]
    assert outbox.sent == [job_id]
    job = read_job(settings, job_id)
    assert (job.status, job.stop_reason, job.attempt) == ("failed", "worker_lost", 2)
    assert job.finished_at is not None
    assert "worker-b" in (job.stop_message or "")
    statuses = [t.status for t in read_transitions(settings, job_id)]
    assert statuses == ["queued", "running", "queued", "running", "failed"]


def test_expired_cancelled_job_ends_cancelled(settings: Settings) -> None:
    """A job whose cancel was requested before its worker died ends cancelled, not queued."""
    job_id = create_job(settings, TEA_SPEC)
    _claim_and_expire(settings, job_id, "worker-a")
    update_job(settings, job_id, cancel_requested=True)
    outbox = _Outbox()

    report = reap_once(settings, enqueue=outbox)

    assert report.cancelled == [job_id]
    assert outbox.sent == []
    job = read_job(settings, job_id)
    assert (job.status, job.stop_reason) == ("cancelled", "cancelled")


def test_requeued_job_resumes_and_succeeds(settings: Settings) -> None:
    """A job the reaper requeued is claimed again as attempt 2 and finishes."""
    job_id = create_job(settings, TEA_SPEC)
    _claim_and_expire(settings, job_id, "worker-a")
    reap_once(settings, enqueue=_Outbox())

    outcome = run_job(job_id, worker_id="worker-b", settings=settings)

    assert outcome == "succeeded"
    job = read_job(settings, job_id)
    assert (job.status, job.attempt, job.worker_id) == ("succeeded", 2, "worker-b")


def test_dropped_message_resent_then_runs(settings: Settings) -> None:
    """A queued job whose message was lost is sent again once, then runs."""
    job_id = create_job(settings, TEA_SPEC)
    fresh_id = create_job(settings, TEA_SPEC)
    age_job(settings, job_id, settings.requeue_after_seconds + 5)
    outbox = _Outbox()

    first = reap_once(settings, enqueue=outbox)
    second = reap_once(settings, enqueue=outbox)
    outcome = run_job(outbox.sent[0], worker_id="worker-a", settings=settings)

    assert first.resent == [job_id]
    assert second.resent == []
    assert outbox.sent == [job_id]
    assert read_job(settings, fresh_id).status == "queued"
    assert outcome == "succeeded"
    assert read_job(settings, job_id).status == "succeeded"


def test_reaper_loop_stops_on_event(configure: Configure) -> None:
    """run_reaper passes repeatedly and returns once its stop event is set."""
    settings = configure(reaper_interval_seconds=0.05)
    job_id = create_job(settings, TEA_SPEC)
    _claim_and_expire(settings, job_id, "worker-a")
    outbox = _Outbox()
    stop = threading.Event()
    thread = threading.Thread(target=run_reaper, args=(settings, stop), kwargs={"enqueue": outbox})

    thread.start()
    try:
        deadline = utcnow() + timedelta(seconds=10)
        while not outbox.sent and utcnow() < deadline:
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(5)

    assert not thread.is_alive()
    assert outbox.sent == [job_id]


def _queued_since(
    settings: Settings, job_id: str, seconds_ago: float, last_sent_after: float
) -> None:
    """Make the job queued ``seconds_ago``, with its last message sent ``last_sent_after`` later."""
    queued_at = utcnow() - timedelta(seconds=seconds_ago)
    update_job(
        settings,
        job_id,
        created_at=queued_at,
        enqueued_at=queued_at + timedelta(seconds=last_sent_after),
    )
    with session_scope(settings.resolved_database_url) as session:
        session.execute(update(Transition).where(Transition.job_id == job_id).values(at=queued_at))


def test_resend_interval_grows(configure: Configure) -> None:
    """After the first resend, a job's next message waits twice as long as it had waited."""
    settings = configure(requeue_after_seconds=10.0)
    due_id = create_job(settings, TEA_SPEC)
    early_id = create_job(settings, TEA_SPEC)
    capped_id = create_job(settings, TEA_SPEC)
    # Last sent 10 s after queueing, so the next message is due 20 s later.
    _queued_since(settings, due_id, seconds_ago=31, last_sent_after=10)
    _queued_since(settings, early_id, seconds_ago=29, last_sent_after=10)
    # Waited 1000 s before the last message: the interval is capped at 16 x 10 s.
    _queued_since(settings, capped_id, seconds_ago=1161, last_sent_after=1000)

    report = reap_once(settings, enqueue=_Outbox())

    assert sorted(report.resent) == sorted([due_id, capped_id])
