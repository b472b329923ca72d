"""Run one job: claim it, train it with core's loop, record its epochs, and write the result.

``run_job`` is the plain function the Celery task wraps; tests call it directly.
It never raises for a problem with the job itself: bad data and training errors
end the job ``failed`` with stop_reason ``error``. Database errors during the
claim propagate, and the job stays queued until the reaper sends it again.

Writes during training are buffered and flushed in one short transaction at most
every ``flush_interval_seconds``. The check also runs after every batch, so the
lease is renewed inside long epochs, but history and checkpoints only ever carry
complete epochs. A checkpoint is taken at an epoch end once
``checkpoint_interval_seconds`` have passed since the last one, and is flushed
with the history up to that epoch. A job that resumes, after a release at
shutdown or a lost worker, trains again the epochs after its last checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

import core
from core.paramfile import to_npz_bytes
from services.datasets import load_dataset
from services.errors import NotFound
from services.settings import Settings
from services.store import runs
from services.store.db import session_scope
from services.worker.enqueue import enqueue_job

__all__ = ["FINAL_STATUS", "run_job"]

logger = logging.getLogger(__name__)

# The status a job ends in for each stop reason the training loop reports.
FINAL_STATUS = {
    "completed": "succeeded",
    "early_stopped": "succeeded",
    "time_limit": "succeeded",
    "diverged": "failed",
    "cancelled": "cancelled",
}

# Stop reasons used only inside the worker; they never reach the database.
_RELEASED = "released"  # the worker is shutting down and hands the job back
_LOST = "lost"  # a write was rejected or the lease ran out: another attempt may own the job

# Errors caused by the job's own spec or data; their tracebacks are not logged.
_USER_ERRORS = (ValueError, TypeError, NotFound)


def run_job(
    job_id: str,
    *,
    worker_id: str,
    settings: Settings,
    shutdown: threading.Event | None = None,
) -> str:
    """Claim ``job_id`` and train it to the end; return what happened.

    Returns the final status (``"succeeded"``, ``"failed"`` or ``"cancelled"``) or
    one of these:

    - ``"skipped"``: the job was not queued (a duplicate message, for example), or
      ``shutdown`` was already set and the message went back to the broker.
    - ``"released"``: ``shutdown`` was set during training and the job went back
      to the queue.
    - ``"lost"``: another attempt owns the job now, so nothing more was written.
    """
    if shutdown is not None and shutdown.is_set():
        # A worker that is shutting down can still receive a message it had already
        # fetched. Send it back for another worker instead of claiming the job.
        logger.info("worker %s is shutting down; sending job %s's message back", worker_id, job_id)
        enqueue_job(job_id)
        return "skipped"
    claim = runs.claim(
        job_id, worker_id, settings.lease_seconds, database_url=settings.resolved_database_url
    )
    if claim is None:
        logger.info("job %s is not queued, so worker %s dropped its message", job_id, worker_id)
        return "skipped"
    logger.info(
        "job %s running (attempt %d, worker %s, starting after epoch %d)",
        job_id,
        claim.attempt,
        worker_id,
        claim.resume_epoch,
    )
    if claim.cancel_requested:
        return _end(
            claim,
            status="cancelled",
            stop_reason="cancelled",
            stop_message="cancelled by request before training started",
        )

    callback = _JobCallback(claim, settings, shutdown)
    try:
        trainer = _build_trainer(claim, settings, callback)
        result = trainer.run()
    # Whatever the cause (bad data, a spec the engine rejects, a bug), the job ends
    # failed with the error recorded, instead of running until its lease expires.
    except Exception as error:
        if callback.lost:
            return _report_lost(claim)
        return _fail_with_error(claim, error, callback.pending)

    if callback.lost:
        return _report_lost(claim)
    if result.stop_reason == _RELEASED:
        return _release(claim)
    return _finish(claim, result, callback.pending)


# Building the trainer ------------------------------------------------------------------


def _build_trainer(claim: runs.Claim, settings: Settings, callback: _JobCallback) -> core.Trainer:
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


# The callback ----------------------------------------------------------------------------


class _JobCallback(core.Callback):
    """Buffers epoch records and flushes them, the lease and checkpoints to the job row."""

    def __init__(
        self, claim: runs.Claim, settings: Settings, shutdown: threading.Event | None
    ) -> None:
        self.claim = claim
        self.flush_interval = settings.flush_interval_seconds
        self.checkpoint_interval = settings.checkpoint_interval_seconds
        self.shutdown = shutdown
        self.pending: list[dict[str, float]] = []
        self.lost = False
        self.cancelled = False
        now = time.monotonic()
        self.last_flush = now
        self.last_checkpoint = now
        # Local estimate of the lease deadline; the row's deadline is never earlier.
        self.lease_deadline = now + claim.lease_seconds

    def on_batch_end(self, trainer: core.Trainer, progress: core.BatchProgress) -> None:
        if self.shutdown is not None and self.shutdown.is_set():
            trainer.request_stop(_RELEASED, "the worker is shutting down")
            return
        if time.monotonic() - self.last_flush >= self.flush_interval:
            self._flush(trainer, checkpoint=None)

    def on_epoch_end(self, trainer: core.Trainer, record: dict[str, float]) -> None:
        self.pending.append(record)
        logger.debug("job %s epoch %d: %s", self.claim.job_id, trainer.epoch, record)
        if trainer.should_stop or trainer.epoch >= self.claim.epochs:
            return  # the final transaction writes the rest

        now = time.monotonic()
        checkpoint = None
        if now - self.last_checkpoint >= self.checkpoint_interval:
            checkpoint = trainer.state_dict().to_bytes()
        if checkpoint is not None or now - self.last_flush >= self.flush_interval:
            self._flush(trainer, checkpoint)

    def _flush(self, trainer: core.Trainer, checkpoint: bytes | None) -> None:
        started = time.monotonic()
        progress = progress_of(trainer, self.claim.epochs) if self.pending or checkpoint else None
        self.last_flush = started
        try:
            result = runs.flush(self.claim, self.pending, progress, checkpoint)
        except SQLAlchemyError as error:
            self._on_flush_error(trainer, error)
            return

        if not result.ok:
            self._stop_lost(trainer, "a fenced write matched no row")
            return
        self.pending.clear()
        self.lease_deadline = started + self.claim.lease_seconds
        if checkpoint is not None:
            self.last_checkpoint = started
        if result.cancel_requested and not self.cancelled:
            self.cancelled = True
            trainer.request_stop("cancelled", "cancelled by request")

    def _on_flush_error(self, trainer: core.Trainer, error: SQLAlchemyError) -> None:
        """Keep the buffer for the next flush, unless the lease may have run out meanwhile."""
        if time.monotonic() + self.flush_interval >= self.lease_deadline:
            self._stop_lost(trainer, f"the lease could not be renewed: {error}")
            return
        logger.warning(
            "job %s: flush failed on worker %s, retrying in %.1f s: %s",
            self.claim.job_id,
            self.claim.worker_id,
            self.flush_interval,
            error,
        )

    def _stop_lost(self, trainer: core.Trainer, reason: str) -> None:
        self.lost = True
        trainer.request_stop(_LOST, reason)
        logger.info(
            "job %s: attempt %d on worker %s stops: %s",
            self.claim.job_id,
            self.claim.attempt,
            self.claim.worker_id,
            reason,
        )


def progress_of(trainer: core.Trainer, epochs: int) -> runs.Progress:
    """Return the job's summary columns as of the trainer's last complete epoch."""
    record = trainer.history[-1] if trainer.history else {}
    eta_seconds = None
    if trainer.epoch:
        remaining = trainer.elapsed_seconds / trainer.epoch * (epochs - trainer.epoch)
        limit = trainer.spec.training.max_seconds
        if limit is not None:
            remaining = min(remaining, max(limit - trainer.elapsed_seconds, 0.0))
        eta_seconds = remaining
    return runs.Progress(
        epoch=trainer.epoch,
        metrics={name: value for name, value in record.items() if name != "epoch"},
        eta_seconds=eta_seconds,
        monitor=trainer.monitor,
        best_epoch=trainer.best_epoch,
        best_value=trainer.best_value,
    )


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


def _finish(claim: runs.Claim, result: core.FitResult, pending: list[dict[str, float]]) -> str:
    try:
        weights = to_npz_bytes(result.model)
    except (TypeError, ValueError) as error:  # a class label the parameter file cannot store
        return _fail_with_error(claim, error, pending)
    return _end(
        claim,
        status=FINAL_STATUS[result.stop_reason],
        stop_reason=result.stop_reason,
        stop_message=result.stop_message,
        history=pending,
        progress=_final_progress(result),
        weights=weights,
    )


def _fail_with_error(claim: runs.Claim, error: Exception, pending: list[dict[str, float]]) -> str:
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
        status="failed",
        stop_reason="error",
        error_type=type(error).__name__,
        error_message=str(error),
        history=pending,
    )


def _end(claim: runs.Claim, *, status: str, stop_reason: str, **details: Any) -> str:
    """Write the final status; log it, or log that another attempt owns the job now."""
    try:
        written = runs.finish(claim, status=status, stop_reason=stop_reason, **details)
    except SQLAlchemyError as error:
        # The lease runs out, the reaper requeues the job, and it resumes from its checkpoint.
        logger.error(
            "job %s: could not write the final status %s (attempt %d, worker %s): %s",
            claim.job_id,
            status,
            claim.attempt,
            claim.worker_id,
            error,
        )
        return _LOST
    if not written:
        return _report_lost(claim)
    message = details.get("stop_message") or details.get("error_message") or ""
    logger.info(
        "job %s %s, %s (attempt %d, worker %s) %s",
        claim.job_id,
        status,
        stop_reason,
        claim.attempt,
        claim.worker_id,
        message,
    )
    return status


def _release(claim: runs.Claim) -> str:
    reason = f"worker {claim.worker_id} shut down; the job resumes from its last checkpoint"
    if not runs.release(claim, reason):
        return _report_lost(claim)
    logger.info(
        "job %s queued again (attempt %d, worker %s shutting down)",
        claim.job_id,
        claim.attempt,
        claim.worker_id,
    )
    enqueue_job(claim.job_id)
    return _RELEASED


def _report_lost(claim: runs.Claim) -> str:
    logger.info(
        "job %s: attempt %d on worker %s no longer owns the job and wrote nothing more",
        claim.job_id,
        claim.attempt,
        claim.worker_id,
    )
    return _LOST
