"""Run one job: claim it, train it with core's loop, record its epochs, and write the result.

``run_job`` is the plain function the Celery task wraps; tests call it directly.
It never raises for a problem with the job itself: bad data and training errors
end the job ``failed`` with stop_reason ``error``. Database errors during the
claim propagate, and the job stays queued until the reaper sends it again.

While the job trains, a ``Heartbeat`` thread renews the lease and
``JobCallback`` writes the history and checkpoints at epoch ends (see their
modules). A job that resumes, after a release at shutdown or a lost worker,
trains again the epochs after its last checkpoint.

Every write after the claim is fenced by the attempt number. The final write
(result, release or failure) is retried with backoff while the database is
unreachable, until the lease may have expired; then the worker gives up, and the
reaper requeues the job once its lease has expired.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

import core
from core.paramfile import to_npz_bytes
from services.datasets import load_dataset
from services.errors import NotFound
from services.logging_setup import log_context
from services.settings import Settings
from services.store import runs
from services.store.db import session_scope
from services.worker.callback import (
    LOST,
    RELEASED,
    JobCallback,
    StopFlag,
    exit_if_fault_at,
    progress_of,
)
from services.worker.enqueue import enqueue_job
from services.worker.heartbeat import Heartbeat, retry_delay

__all__ = ["FINAL_STATUS", "progress_of", "run_job"]

logger = logging.getLogger(__name__)

# The status a job ends in for each stop reason the training loop reports.
FINAL_STATUS = {
    "completed": "succeeded",
    "early_stopped": "succeeded",
    "time_limit": "succeeded",
    "diverged": "failed",
    "cancelled": "cancelled",
}

# Errors caused by the job's own spec or data; their tracebacks are not logged.
_USER_ERRORS = (ValueError, TypeError, NotFound)


def run_job(
    job_id: str,
    *,
    worker_id: str,
    settings: Settings,
    shutdown: StopFlag | None = None,
) -> str:
    """Claim ``job_id`` and train it to the end; return what happened.

    Returns the final status (``"succeeded"``, ``"failed"`` or ``"cancelled"``) or
    one of these:

    - ``"skipped"``: the job was not queued (a duplicate message, for example), or
      ``shutdown`` was already set and the message went back to the broker.
    - ``"deferred"``: the job's tenant already runs ``max_running_jobs_per_tenant``
      jobs, so the job stays queued and its message comes back after
      ``reaper_interval_seconds``.
    - ``"released"``: ``shutdown`` was set during training and the job went back
      to the queue.
    - ``"lost"``: another attempt owns the job now, or the lease may have expired
      while the database was unreachable, so nothing more was written.

    Every record logged meanwhile carries ``job_id``, and ``attempt`` once claimed.
    """
    with log_context(job_id=job_id):
        return _claim_and_run(job_id, worker_id, settings, shutdown)


def _claim_and_run(
    job_id: str, worker_id: str, settings: Settings, shutdown: StopFlag | None
) -> str:
    if shutdown is not None and shutdown.is_set():
        # A worker that is shutting down can still receive a message it had already
        # fetched. Send it back for another worker instead of claiming the job.
        logger.info("worker %s is shutting down; sending job %s's message back", worker_id, job_id)
        enqueue_job(job_id)
        return "skipped"
    claim = runs.claim(
        job_id,
        worker_id,
        settings.lease_seconds,
        database_url=settings.resolved_database_url,
        max_running_per_tenant=settings.max_running_jobs_per_tenant,
    )
    if claim is None:
        logger.info("job %s is not queued, so worker %s dropped its message", job_id, worker_id)
        return "skipped"
    if isinstance(claim, runs.Deferred):
        # The message comes back after a pause; the reaper resends it if this one is lost.
        retry_seconds = settings.reaper_interval_seconds
        logger.info(
            "job %s stays queued: tenant %s has %d jobs running, its limit "
            "(max_running_jobs_per_tenant); trying again in %.1f s",
            job_id,
            claim.tenant,
            claim.running,
            retry_seconds,
        )
        enqueue_job(job_id, delay_seconds=retry_seconds)
        return "deferred"
    with log_context(attempt=claim.attempt):
        return _run_claimed(claim, settings, shutdown)


def _run_claimed(claim: runs.Claim, settings: Settings, shutdown: StopFlag | None) -> str:
    job_id, worker_id = claim.job_id, claim.worker_id
    logger.info(
        "job %s running (attempt %d, worker %s, starting after epoch %d)",
        job_id,
        claim.attempt,
        worker_id,
        claim.resume_epoch,
    )
    exit_if_fault_at(settings.fault_exit_at_epoch, claim, claim.resume_epoch)
    heartbeat = Heartbeat(claim, settings.flush_interval_seconds)
    if claim.cancel_requested:
        return _end(
            claim,
            heartbeat.deadline,
            status="cancelled",
            stop_reason="cancelled",
            stop_message="cancelled by request before training started",
        )
    return _train(claim, settings, heartbeat, shutdown)


def _train(
    claim: runs.Claim, settings: Settings, heartbeat: Heartbeat, shutdown: StopFlag | None
) -> str:
    """Train with the heartbeat running, then write the outcome once it has stopped.

    The heartbeat stops first because a renewal after the final write would be
    rejected, and the heartbeat would then report a lost lease.
    """
    callback = JobCallback(claim, settings, heartbeat, shutdown)
    heartbeat.start()
    try:
        trainer = _build_trainer(claim, settings, callback)
        result = trainer.run()
    except SQLAlchemyError as error:
        # Loading the data or the checkpoint failed: the database, not the job, is
        # at fault. The lease expires, and the reaper requeues the job or, after
        # max_attempts, fails it.
        heartbeat.stop()
        logger.error(
            "job %s: attempt %d on worker %s could not read its data, leaving the job to "
            "the reaper: %s",
            claim.job_id,
            claim.attempt,
            claim.worker_id,
            error,
        )
        return LOST
    # Whatever the cause (bad data, a spec the engine rejects, a bug), the job ends
    # failed with the error recorded, instead of running until its lease expires.
    except Exception as error:
        heartbeat.stop()
        if callback.lost:
            return _report_lost(claim)
        return _fail_with_error(claim, heartbeat.deadline, error, callback)
    heartbeat.stop()

    if callback.lost:
        return _report_lost(claim)
    if result.stop_reason == RELEASED:
        return _release(claim, heartbeat.deadline, callback)
    return _finish(claim, heartbeat.deadline, result, callback)


# Building the trainer ------------------------------------------------------------------


def _build_trainer(claim: runs.Claim, settings: Settings, callback: JobCallback) -> core.Trainer:
    """Load the data and the checkpoint and build the trainer for this attempt."""
    with session_scope(claim.database_url, write=False) as session:
        data = load_dataset(session, claim.tenant, claim.dataset)
    spec = _capped_spec(core.parse_spec(claim.spec), settings.max_job_seconds)
    checkpoint = runs.read_checkpoint(claim) if claim.resume_epoch else None
    resume_from = core.TrainingState.from_bytes(checkpoint) if checkpoint is not None else None
    return core.make_trainer(
        spec,
        data.x,
        data.y,
        task=data.task,
        classes=data.classes,
        feature_names=data.feature_names,
        encoding=data.encoding,
        callback=callback,
        resume_from=resume_from,
    )


def _capped_spec(spec: core.JobSpec, max_job_seconds: float | None) -> core.JobSpec:
    """Return the spec with ``training.max_seconds`` at most the server's ``max_job_seconds``.

    NOTE: the capped value is part of the checkpoint's spec, so changing
    ``max_job_seconds`` while a job is between attempts makes its resume fail.
    """
    if max_job_seconds is None:
        return spec
    requested = spec.training.max_seconds
    capped = max_job_seconds if requested is None else min(requested, max_job_seconds)
    training = spec.training.model_copy(update={"max_seconds": capped})
    return spec.model_copy(update={"training": training})


# Ending the attempt ------------------------------------------------------------------------


def _final_progress(result: core.FitResult) -> runs.Progress:
    record = result.history[-1] if result.history else {}
    return runs.Progress(
        epoch=result.epochs_completed,
        metrics={name: value for name, value in record.items() if name != "epoch"},
        eta_seconds=0.0,
        monitor=result.monitor,
        best_epoch=result.best_epoch,
        best_value=result.best_value,
    )


def _finish(
    claim: runs.Claim, deadline: float, result: core.FitResult, callback: JobCallback
) -> str:
    try:
        weights = to_npz_bytes(result.model)
    except (TypeError, ValueError) as error:  # a class label the parameter file cannot store
        return _fail_with_error(claim, deadline, error, callback)
    return _end(
        claim,
        deadline,
        status=FINAL_STATUS[result.stop_reason],
        stop_reason=result.stop_reason,
        stop_message=result.stop_message,
        history=callback.pending,
        samples_per_epoch=callback.samples_per_epoch,
        progress=_final_progress(result),
        weights=weights,
    )


def _fail_with_error(
    claim: runs.Claim, deadline: float, error: Exception, callback: JobCallback
) -> str:
    if not isinstance(error, _USER_ERRORS):
        logger.error(
            "job %s raised an unexpected error (attempt %d, worker %s)",
            claim.job_id,
            claim.attempt,
            claim.worker_id,
            exc_info=error,
        )
    return _end(
        claim,
        deadline,
        status="failed",
        stop_reason="error",
        error_type=type(error).__name__,
        error_message=str(error),
        history=callback.pending,
        samples_per_epoch=callback.samples_per_epoch,
    )


def _end(
    claim: runs.Claim, deadline: float, *, status: str, stop_reason: str, **details: Any
) -> str:
    """Write the final status; log it, or log that another attempt owns the job now."""
    written = _write_until(
        claim,
        deadline,
        lambda: runs.finish(claim, status=status, stop_reason=stop_reason, **details),
        expected_status=status,
        description=f"final status {status!r}",
    )
    if written is None:
        return LOST
    if not written:
        return _report_lost(claim)
    message = details.get("stop_message") or details.get("error_message")
    logger.log(
        logging.WARNING if status == "failed" else logging.INFO,
        "job %s %s, %s (attempt %d, worker %s)%s",
        claim.job_id,
        status,
        stop_reason,
        claim.attempt,
        claim.worker_id,
        f": {message}" if message else "",
    )
    return status


def _release(claim: runs.Claim, deadline: float, callback: JobCallback) -> str:
    """Hand the job back to the queue, with a checkpoint of the epoch it stopped at if any."""
    if callback.release_checkpoint is not None:
        assert callback.release_progress is not None
        epoch = callback.release_progress.epoch
        reason = (
            f"worker {claim.worker_id} shut down after epoch {epoch}; "
            "the job resumes from its checkpoint there"
        )
        details: dict[str, Any] = {
            "history": list(callback.pending),
            "progress": callback.release_progress,
            "checkpoint": callback.release_checkpoint,
            "samples_per_epoch": callback.samples_per_epoch,
        }
    else:
        # Stopped inside an epoch: the epochs since the stored checkpoint are trained again.
        reason = f"worker {claim.worker_id} shut down; the job resumes from its last checkpoint"
        details = {}
    written = _write_until(
        claim,
        deadline,
        lambda: runs.release(claim, reason, **details),
        expected_status="queued",
        description="release to the queue",
    )
    if written is None:
        return LOST
    if not written:
        return _report_lost(claim)
    logger.info(
        "job %s queued again (attempt %d, worker %s shutting down)",
        claim.job_id,
        claim.attempt,
        claim.worker_id,
    )
    enqueue_job(claim.job_id)
    return RELEASED


def _write_until(
    claim: runs.Claim,
    deadline: float,
    write: Callable[[], bool],
    *,
    expected_status: str,
    description: str,
) -> bool | None:
    """Run a fenced write that ends the attempt, retrying database errors until ``deadline``.

    Returns the write's result: True when written, False when the attempt no longer
    owns the job. Returns None when the database stayed unreachable until the lease
    may have expired; the reaper then requeues the job, which resumes from its
    last checkpoint.
    """
    failures = 0
    while True:
        try:
            written = write()
        except SQLAlchemyError as error:
            failures += 1
            delay = retry_delay(failures, 1.0)
            if time.monotonic() + delay >= deadline:
                logger.error(
                    "job %s: writing %s failed until the lease expired (attempt %d, "
                    "worker %s), leaving the job to the reaper: %s",
                    claim.job_id,
                    description,
                    claim.attempt,
                    claim.worker_id,
                    error,
                )
                return None
            level = logging.WARNING if failures == 1 else logging.DEBUG
            logger.log(
                level,
                "job %s: writing %s failed (try %d), retrying in %.1f s: %s",
                claim.job_id,
                description,
                failures,
                delay,
                error,
            )
            time.sleep(delay)
            continue
        if not written and failures:
            return _committed_before(claim, expected_status)
        return written


def _committed_before(claim: runs.Claim, expected_status: str) -> bool:
    """Tell whether a write that raised had committed anyway, so that its retry matched nothing.

    Then the row shows this attempt with the status the write set.
    """
    try:
        state = runs.read_status(claim)
    except SQLAlchemyError:
        return False
    return state == (expected_status, claim.attempt)


def _report_lost(claim: runs.Claim) -> str:
    logger.info(
        "job %s: attempt %d on worker %s no longer owns the job and wrote nothing more",
        claim.job_id,
        claim.attempt,
        claim.worker_id,
    )
    return LOST
