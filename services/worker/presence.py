"""A worker process's presence: its row in ``workers``, refreshed from a daemon thread.

The thread refreshes ``last_seen_at`` every ``HEARTBEAT_SECONDS``, idle or not,
and writes at once when the process starts or ends a job, so ``steep status``
shows the current job. A failed write is logged and tried again at the next
refresh; it never affects the job the process trains. Unlike a job's lease
(``services.worker.heartbeat``), the presence row decides nothing: it only
informs operators and ``/metrics``.
"""

from __future__ import annotations

import logging
import os
import threading

from sqlalchemy.exc import SQLAlchemyError

from services.store import workers
from services.store.workers import WorkerIdentity

__all__ = ["WorkerPresence", "worker_identity"]

logger = logging.getLogger(__name__)


def worker_identity(nodename: str) -> WorkerIdentity:
    """Return this process's identity under the Celery node name ``nodename``.

    The id is ``<nodename>/<pid>``, the ``worker_id`` the job task claims with.
    """
    hostname = nodename.split("@", 1)[1] if "@" in nodename else nodename
    return WorkerIdentity(id=f"{nodename}/{os.getpid()}", hostname=hostname, pid=os.getpid())


class WorkerPresence:
    """Keeps one worker process's row current until ``stop``."""

    def __init__(
        self,
        identity: WorkerIdentity,
        *,
        database_url: str | None,
        interval: float = workers.HEARTBEAT_SECONDS,
    ) -> None:
        self.identity = identity
        self.database_url = database_url
        self.interval = interval
        self._job_id: str | None = None
        self._failures = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"presence-{identity.pid}", daemon=True
        )

    def start(self) -> None:
        """Write the row as started, then refresh it from the thread."""
        self._report(starting=True)
        self._thread.start()
        logger.info("worker %s reports itself every %.0f s", self.identity.id, self.interval)

    def set_job(self, job_id: str | None) -> None:
        """Record the job this process trains now (None: idle); written without waiting."""
        self._job_id = job_id
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread and mark the row stopped; a failure is logged, not raised."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.interval)
        try:
            workers.mark_stopped(self.identity.id, database_url=self.database_url)
        except SQLAlchemyError as error:
            logger.warning("worker %s could not record its stop: %s", self.identity.id, error)
            return
        logger.info("worker %s stopped", self.identity.id)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._report(starting=False)

    def _report(self, *, starting: bool) -> None:
        try:
            workers.report_alive(
                self.identity, self._job_id, starting=starting, database_url=self.database_url
            )
        except SQLAlchemyError as error:
            self._failures += 1
            # The first failure of a run is a warning; repeats every few seconds are noise.
            level = logging.WARNING if self._failures == 1 else logging.DEBUG
            logger.log(
                level,
                "worker %s could not refresh its row (%d failures in a row): %s",
                self.identity.id,
                self._failures,
                error,
            )
            return
        if self._failures:
            logger.info(
                "worker %s refreshed its row again after %d failures",
                self.identity.id,
                self._failures,
            )
        self._failures = 0
