"""The training callback of a job: buffers epochs, flushes them with checkpoints, and stops
the loop when the lease is lost, a cancel is requested or the worker shuts down.

The callback runs in the training thread. It writes to the database only at epoch
ends, because history and checkpoints only ever carry complete epochs. The
``Heartbeat`` thread renews the lease in between. A flush happens at most every
``flush_interval_seconds``, and a checkpoint at an epoch end once
``checkpoint_interval_seconds`` have passed since the last one. A flush that
fails keeps its epochs in the buffer and is tried again at a later epoch end,
with backoff, for as long as the heartbeat holds the lease.

A shutdown request lets the current epoch end so that the job is handed back
with a checkpoint of that epoch, and nothing trained is lost. An epoch still
running ``shutdown_wait_seconds`` after the request is abandoned instead, and
the next attempt resumes from the last stored checkpoint. The callback cannot
checkpoint in the middle of an epoch: after a stop there, the trainer puts back
the parameters of the last complete epoch but not its optimizer and RNG state.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

import core
from services.settings import Settings
from services.store import runs
from services.worker.heartbeat import Heartbeat, retry_delay

__all__ = ["LOST", "RELEASED", "JobCallback", "StopFlag", "progress_of"]

logger = logging.getLogger(__name__)

# Stop reasons used only inside the worker; they never reach the database.
RELEASED = "released"  # the worker is shutting down and hands the job back
LOST = "lost"  # a write was rejected or the lease ran out: another attempt may own the job


class StopFlag(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` or a flag shared across processes."""

    def is_set(self) -> bool: ...


class JobCallback(core.Callback):
    """Buffers epoch records and flushes them and checkpoints to the job row, fenced."""

    def __init__(
        self,
        claim: runs.Claim,
        settings: Settings,
        heartbeat: Heartbeat,
        shutdown: StopFlag | None,
    ) -> None:
        self.claim = claim
        self.heartbeat = heartbeat
        self.shutdown = shutdown
        self.flush_interval = settings.flush_interval_seconds
        self.checkpoint_interval = settings.checkpoint_interval_seconds
        self.shutdown_wait = settings.shutdown_wait_seconds
        self.fault_exit_at_epoch = settings.fault_exit_at_epoch

        self.pending: list[dict[str, float]] = []
        # Training rows per epoch, for the samples-trained counter; known from the first epoch.
        self.samples_per_epoch = 0
        self.lost = False
        self.cancelled = False
        # Set when the training loop stopped at an epoch end to hand the job back.
        self.release_checkpoint: bytes | None = None
        self.release_progress: runs.Progress | None = None
        self._shutdown_seen_at: float | None = None
        self._flush_failures = 0
        now = time.monotonic()
        self._next_flush = now + self.flush_interval
        self._last_checkpoint = now

    # Hooks ----------------------------------------------------------------------------

    def on_batch_end(self, trainer: core.Trainer, progress: core.BatchProgress) -> None:
        if self._stop_if_lost_or_cancelled(trainer):
            return
        if self._shutdown_requested():
            self._stop_if_shutdown_wait_passed(trainer)

    def on_epoch_end(self, trainer: core.Trainer, record: dict[str, float]) -> None:
        self.pending.append(record)
        self.samples_per_epoch = len(trainer.data.x_train)
        logger.debug("job %s epoch %d: %s", self.claim.job_id, trainer.epoch, record)
        exit_if_fault_at(self.fault_exit_at_epoch, self.claim, trainer.epoch)
        if trainer.should_stop or trainer.epoch >= self.claim.epochs:
            return  # the final transaction writes the rest
        if self._stop_if_lost_or_cancelled(trainer):
            return
        if self._shutdown_requested():
            self._stop_for_release(trainer)
            return

        now = time.monotonic()
        if not self._flush_due(now):
            return
        checkpoint = trainer.state_dict().to_bytes() if self._checkpoint_due(now) else None
        self._flush(trainer, checkpoint)

    # Stopping ---------------------------------------------------------------------------

    def _stop_if_lost_or_cancelled(self, trainer: core.Trainer) -> bool:
        if self.heartbeat.is_lost():
            self._stop_lost(trainer, self.heartbeat.lost_reason or "the lease was lost")
            return True
        if self.heartbeat.cancel_requested.is_set() and not self.cancelled:
            self._cancel(trainer)
            return True
        return False

    def _shutdown_requested(self) -> bool:
        if self.shutdown is None or not self.shutdown.is_set():
            return False
        if self._shutdown_seen_at is None:
            self._shutdown_seen_at = time.monotonic()
            logger.info(
                "job %s: worker %s is shutting down; the job goes back to the queue at the "
                "end of this epoch, or in %.0f s if the epoch has not ended by then",
                self.claim.job_id,
                self.claim.worker_id,
                self.shutdown_wait,
            )
        return True

    def _stop_if_shutdown_wait_passed(self, trainer: core.Trainer) -> None:
        assert self._shutdown_seen_at is not None
        if time.monotonic() - self._shutdown_seen_at >= self.shutdown_wait:
            trainer.request_stop(RELEASED, "the worker is shutting down")

    def _stop_for_release(self, trainer: core.Trainer) -> None:
        """Stop at this epoch boundary and keep its checkpoint for the release."""
        self.release_checkpoint = trainer.state_dict().to_bytes()
        self.release_progress = progress_of(trainer, self.claim.epochs)
        trainer.request_stop(RELEASED, "the worker is shutting down")

    def _cancel(self, trainer: core.Trainer) -> None:
        self.cancelled = True
        trainer.request_stop("cancelled", "cancelled by request")

    def _stop_lost(self, trainer: core.Trainer, reason: str) -> None:
        self.lost = True
        trainer.request_stop(LOST, reason)
        logger.info(
            "job %s: attempt %d on worker %s stops training: %s",
            self.claim.job_id,
            self.claim.attempt,
            self.claim.worker_id,
            reason,
        )

    # Flushing ---------------------------------------------------------------------------

    def _checkpoint_due(self, now: float) -> bool:
        return now - self._last_checkpoint >= self.checkpoint_interval

    def _flush_due(self, now: float) -> bool:
        if now >= self._next_flush:
            return True
        # A due checkpoint skips the flush interval, but not the backoff after a failure.
        return not self._flush_failures and self._checkpoint_due(now)

    def _flush(self, trainer: core.Trainer, checkpoint: bytes | None) -> None:
        started = time.monotonic()
        progress = progress_of(trainer, self.claim.epochs)
        try:
            result = runs.flush(
                self.claim,
                self.pending,
                progress,
                checkpoint,
                samples_per_epoch=self.samples_per_epoch,
            )
        except SQLAlchemyError as error:
            self._on_flush_error(error)
            return

        if not result.ok:
            self._stop_lost(trainer, "a fenced write matched no row")
            return
        if self._flush_failures:
            logger.info(
                "job %s: flush succeeded again after %d failures",
                self.claim.job_id,
                self._flush_failures,
            )
        self._flush_failures = 0
        self.pending.clear()
        self.heartbeat.renewed(result.renewed_at)
        self._next_flush = started + self.flush_interval
        if checkpoint is not None:
            self._last_checkpoint = started
        if result.cancel_requested and not self.cancelled:
            self._cancel(trainer)
        elif result.stop_request == "early_stopped" and not trainer.should_stop:
            # The sweeper's early-stopping rule: the job ends succeeded, like a patience stop.
            trainer.request_stop("early_stopped", result.stop_request_message)

    def _on_flush_error(self, error: SQLAlchemyError) -> None:
        """Keep the buffer and back off; the heartbeat decides when the lease is gone."""
        self._flush_failures += 1
        delay = retry_delay(self._flush_failures, self.flush_interval)
        self._next_flush = time.monotonic() + delay
        level = logging.WARNING if self._flush_failures == 1 else logging.DEBUG
        logger.log(
            level,
            "job %s: flush %d failed on worker %s, keeping %d epochs for a retry in %.1f s: %s",
            self.claim.job_id,
            self._flush_failures,
            self.claim.worker_id,
            len(self.pending),
            delay,
            error,
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


def exit_if_fault_at(fault_exit_at_epoch: int | None, claim: runs.Claim, epoch: int) -> None:
    """End the process as a crash would when the test-only ``fault_exit_at_epoch`` is ``epoch``.

    ``os._exit`` skips every cleanup: no final write, no release, no message.
    """
    if fault_exit_at_epoch is None or fault_exit_at_epoch != epoch:
        return
    logger.warning(
        "job %s: exiting worker process %d after epoch %d, because the test-only setting "
        "fault_exit_at_epoch is %d",
        claim.job_id,
        os.getpid(),
        epoch,
        fault_exit_at_epoch,
    )
    os._exit(1)
