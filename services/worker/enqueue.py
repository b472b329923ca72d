"""Send the message that wakes a worker for a job. Call only after the job row is committed."""

from __future__ import annotations

import logging

from services.worker.celery_app import RUN_JOB_TASK, celery_app

__all__ = ["enqueue_job"]

logger = logging.getLogger(__name__)


def enqueue_job(job_id: str, *, delay_seconds: float | None = None) -> bool:
    """Publish a run message for ``job_id``; return False if the broker could not be reached.

    With ``delay_seconds``, no worker runs the message before that many seconds have
    passed. A failed publish loses nothing: the job stays ``queued`` in the database
    and the reaper sends the message again once ``requeue_after_seconds`` have passed.
    """
    try:
        celery_app().send_task(RUN_JOB_TASK, args=[job_id], retry=False, countdown=delay_seconds)
    except Exception as error:  # kombu raises many types for an unreachable broker
        logger.warning("could not enqueue job %s, the reaper will retry: %s", job_id, error)
        return False
    return True
