"""The Celery task that runs a job, and the worker process hooks it needs.

The task is a thin wrapper: ``services.worker.runner.run_job`` does the work and
opens its own sessions. It is declared with ``shared_task`` so that every Celery
app of the process, including one built after a settings change, has it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
from typing import Any

from celery import Task, shared_task
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
    worker_shutting_down,
)
from threadpoolctl import threadpool_limits

from services.logging_setup import configure_logging
from services.settings import get_settings
from services.store.db import dispose_engine
from services.worker.celery_app import RUN_JOB_TASK
from services.worker.presence import WorkerPresence, worker_identity
from services.worker.runner import run_job

__all__ = ["ShutdownFlag", "limit_blas_threads", "run_job_task", "shutdown_requested"]


class ShutdownFlag:
    """A flag that one process sets and every process forked from it reads.

    It is a byte of shared memory without a lock, so that setting it inside a signal
    handler cannot deadlock with a reader in the same process.
    """

    def __init__(self) -> None:
        self._value = multiprocessing.RawValue(ctypes.c_bool, False)

    def set(self) -> None:
        self._value.value = True

    def is_set(self) -> bool:
        return bool(self._value.value)


# Set when the worker begins a warm shutdown (SIGTERM, or the first Ctrl-C). Celery
# sends that signal only in the worker's main process. The flag is created when this
# module is imported, before Celery forks its prefork children, so they share it: a
# running job goes back to the queue under both pools (see JobCallback).
shutdown_requested = ShutdownFlag()


# The presence row of this process when it runs jobs (the solo pool's process, or a
# prefork child); None in a prefork parent and outside a worker.
_presence: WorkerPresence | None = None


@shared_task(name=RUN_JOB_TASK, bind=True, ignore_result=True)
def run_job_task(self: Task, job_id: str) -> str:
    """Run the job ``job_id``; the message carries nothing else."""
    worker_id = f"{self.request.hostname}/{os.getpid()}"
    presence = _presence
    if presence is not None:
        presence.set_job(job_id)
    try:
        return run_job(
            job_id, worker_id=worker_id, settings=get_settings(), shutdown=shutdown_requested
        )
    finally:
        if presence is not None:
            presence.set_job(None)


def limit_blas_threads(threads: int) -> None:
    """Limit the BLAS and OpenMP pools of this process to ``threads`` threads."""
    threadpool_limits(limits=threads)


@setup_logging.connect
def _on_setup_logging(**_: Any) -> None:
    configure_logging(get_settings())


def _start_presence(nodename: str) -> None:
    """Start this process's presence once. Celery 5.7's solo pool sends both
    worker_init and worker_process_init to the same process."""
    global _presence
    if _presence is not None and _presence.identity.pid == os.getpid():
        return
    settings = get_settings()
    _presence = WorkerPresence(
        worker_identity(nodename), database_url=settings.resolved_database_url
    )
    _presence.start()


def _stop_presence() -> None:
    global _presence
    if _presence is not None:
        _presence.stop()
        _presence = None


def _runs_tasks_in_main_process(pool_cls: Any) -> bool:
    """Tell whether a worker with this pool runs tasks in its own process (solo, threads)."""
    return not issubclass(get_implementation(pool_cls), PreforkPool)


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    # The solo pool runs tasks in this process.
    limit_blas_threads(get_settings().blas_threads)
    if sender is not None and _runs_tasks_in_main_process(sender.pool_cls):
        _start_presence(sender.hostname)


@worker_process_init.connect
def _on_worker_process_init(sender: Any = None, **_: Any) -> None:
    # A prefork child must not reuse the pooled connections it inherited.
    dispose_engine()
    limit_blas_threads(get_settings().blas_threads)
    # The sender is the node name.
    if sender is not None:
        _start_presence(str(sender))


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    _stop_presence()


@worker_process_shutdown.connect
def _on_worker_process_shutdown(**_: Any) -> None:
    _stop_presence()


@worker_shutting_down.connect
def _on_worker_shutting_down(**_: Any) -> None:
    # Runs inside a signal handler, so it only sets the event and does not log.
    shutdown_requested.set()
