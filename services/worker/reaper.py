"""The reaper: recovers jobs whose worker died and jobs whose message was lost.

Each pass does three things:

- A running job whose lease expired goes back to ``queued`` and gets a new
  message; it resumes from its last checkpoint. Once its ``attempt`` reaches
  ``max_attempts`` it fails with stop_reason ``worker_lost`` instead.
- A queued job that no worker claimed for ``requeue_after_seconds`` gets its
  message sent again, because the first one may have been lost. A duplicate
  message is harmless: only one claim can win. Further resends of a job come
  at growing intervals (``runs.resend_stale_queued``), so that jobs waiting
  behind a long backlog do not flood the broker with duplicates.
- Rows of worker processes that stopped, or went silent, a day ago are deleted
  (``services.store.workers.prune_workers``).

A worker renews its lease from a heartbeat thread, at least three times per
lease, whatever the length of its batches. So ``lease_seconds`` is how long a
dead or paused worker keeps its job from others, and also the longest database
outage that a running job survives without being requeued.

Several reapers may run at once: each update is guarded by the state it read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from services.settings import Settings
from services.store import runs, workers
from services.worker.enqueue import enqueue_job
from services.worker.sweeper import ensure_sweeper_thread

__all__ = ["ReapReport", "reap_once", "run_reaper"]

logger = logging.getLogger(__name__)

Enqueue = Callable[[str], bool]


@dataclass
class ReapReport:
    """The ids of the jobs one pass changed or sent again, and of the workers it deleted."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    pruned_workers: list[str] = field(default_factory=list)


def reap_once(settings: Settings, *, enqueue: Enqueue = enqueue_job) -> ReapReport:
    """Run one pass over expired leases and unclaimed queued jobs; return what changed.

    ``enqueue`` sends a job's message; it is called after the change is committed.
    """
    report = ReapReport()
    database_url = settings.resolved_database_url

    for job in runs.reap_expired_leases(settings.max_attempts, database_url=database_url):
        logger.info(
            "job %s %s: lease expired on worker %s (attempt %d)",
            job.job_id,
            job.status,
            job.worker_id,
            job.attempt,
        )
        if job.status == "queued":
            report.requeued.append(job.job_id)
            enqueue(job.job_id)
        elif job.status == "failed":
            report.failed.append(job.job_id)
        else:
            report.cancelled.append(job.job_id)

    report.resent = runs.resend_stale_queued(
        settings.requeue_after_seconds, database_url=database_url
    )
    for job_id in report.resent:
        logger.debug("job %s is still queued; sending its message again", job_id)
        enqueue(job_id)
    if report.resent:
        logger.info(
            "sent the messages of %d jobs again, queued for more than %.0f s: %s",
            len(report.resent),
            settings.requeue_after_seconds,
            ", ".join(report.resent[:10]),
        )

    report.pruned_workers = workers.prune_workers(database_url=database_url)
    if report.pruned_workers:
        logger.info(
            "deleted the rows of %d workers stopped or silent for a day",
            len(report.pruned_workers),
        )
    return report


def run_reaper(
    settings: Settings, stop_event: threading.Event, *, enqueue: Enqueue = enqueue_job
) -> None:
    """Run ``reap_once`` every ``reaper_interval_seconds`` until ``stop_event`` is set."""
    logger.info("reaper started, a pass every %.1f s", settings.reaper_interval_seconds)
    failures = 0
    while not stop_event.is_set():
        try:
            reap_once(settings, enqueue=enqueue)
        # A long-running loop must outlive any one failed pass, whatever its cause.
        except Exception as error:
            failures += 1
            if failures == 1:
                logger.warning("reaper pass failed, retrying every pass: %s", error)
            else:
                logger.debug("reaper pass failed %d times in a row: %s", failures, error)
        else:
            if failures:
                logger.info("reaper pass succeeded again after %d failures", failures)
            failures = 0
        ensure_sweeper_thread(settings, stop_event, enqueue=enqueue)
        stop_event.wait(settings.reaper_interval_seconds)
    logger.info("reaper stopped")
