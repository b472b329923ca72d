"""The heartbeat: a thread that renews a running job's lease while the job trains.

The training thread writes history only at epoch ends, and a single batch of a
large network can take longer than ``lease_seconds``. Renewing from a separate
thread keeps the lease independent of batch and epoch length.

What the heartbeat proves is that the worker process is alive and still owns
the job; it does not prove that training advances. A paused process (SIGSTOP)
or a dead one stops every thread, so its lease expires and the reaper hands the
job to another worker. A training thread inside one very long batch keeps its
lease, which is right, because it is making progress.

NOTE: a training thread that hangs forever (a deadlock in native code) also keeps
its lease, since the heartbeat cannot tell a hang from a long batch. The job's
time limit is checked only between batches, so it does not end such a hang either.

Renewals are fenced by the attempt number like every other write. When one
matches no row, or when no renewal succeeded before the lease ran out (the
database was unreachable), the heartbeat reports the lease lost and the training
thread stops at its next batch without writing anything more.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from services.store import runs

__all__ = ["Heartbeat", "retry_delay"]

logger = logging.getLogger(__name__)

# The first retry after a failed write waits this long; each further retry doubles it.
FIRST_RETRY_SECONDS = 0.1


def retry_delay(failures: int, max_seconds: float) -> float:
    """Return the wait before the next try after ``failures`` failed writes in a row."""
    return float(min(FIRST_RETRY_SECONDS * 2 ** (failures - 1), max_seconds))


class Heartbeat:
    """Renews one attempt's lease from a daemon thread until stopped or until the lease is lost.

    Renewals happen every ``interval`` seconds, and at least three times per lease,
    so that a failed renewal leaves time for retries before the lease runs out.
    Retries back off from ``FIRST_RETRY_SECONDS`` up to the interval.
    """

    def __init__(self, claim: runs.Claim, interval: float) -> None:
        self.claim = claim
        self.interval = min(interval, claim.lease_seconds / 3)
        self.cancel_requested = threading.Event()
        self.lost_reason: str | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Monotonic time until which the row's lease has certainly not expired.
        self._deadline = claim.lease_started + claim.lease_seconds
        # The thread runs in a copy of this context, so its log records carry the job id.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name=f"heartbeat-{claim.job_id}",
            daemon=True,
        )

    # The training thread's side -------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing; wait up to ``lease_seconds`` for a renewal in progress to end.

        A renewal still running after that (a database that does not reply) is
        harmless: it is fenced, and the stopped thread ignores its result.
        """
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.claim.lease_seconds)

    @property
    def deadline(self) -> float:
        """Monotonic time until which the lease is certainly valid."""
        return self._deadline

    def renewed(self, renewed_at: float | None) -> None:
        """Record a renewal (``FlushResult.renewed_at``), also one made by another fenced write."""
        if renewed_at is None:
            return
        with self._lock:
            self._deadline = max(self._deadline, renewed_at + self.claim.lease_seconds)

    def is_lost(self) -> bool:
        """Whether the attempt must stop: a renewal was rejected or the lease ran out.

        The deadline check also covers a renewal that hangs (an unreachable database
        host), so the training thread never outlives its lease by more than a batch.
        """
        if self._lost.is_set():
            return True
        if time.monotonic() >= self._deadline:
            self._lose("the lease expired before it could be renewed")
            return True
        return False

    # The thread ------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        delay = self.interval
        while not self._stop.wait(delay):
            try:
                result = runs.renew_lease(self.claim)
            except SQLAlchemyError as error:
                if self._stop.is_set():
                    return
                failures += 1
                delay = retry_delay(failures, self.interval)
                if time.monotonic() + delay >= self._deadline:
                    self._lose(f"the lease could not be renewed before it expired: {error}")
                    return
                self._log_failure(failures, delay, error)
                continue

            if self._stop.is_set():
                return  # the attempt ended while this renewal ran
            if not result.ok:
                self._lose("another attempt owns the job, or it was ended by someone else")
                return
            if failures:
                logger.info(
                    "job %s: lease renewed again after %d failed tries",
                    self.claim.job_id,
                    failures,
                )
            failures = 0
            delay = self.interval
            self.renewed(result.renewed_at)
            if result.cancel_requested:
                self.cancel_requested.set()

    def _log_failure(self, failures: int, delay: float, error: SQLAlchemyError) -> None:
        level = logging.WARNING if failures == 1 else logging.DEBUG
        logger.log(
            level,
            "job %s: lease renewal %d failed on worker %s, retrying in %.1f s: %s",
            self.claim.job_id,
            failures,
            self.claim.worker_id,
            delay,
            error,
        )

    def _lose(self, reason: str) -> None:
        with self._lock:
            if self._lost.is_set():
                return
            self.lost_reason = reason
            self._lost.set()
        logger.warning(
            "job %s: attempt %d on worker %s lost its lease: %s",
            self.claim.job_id,
            self.claim.attempt,
            self.claim.worker_id,
            reason,
        )
