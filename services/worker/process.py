"""Start worker processes: the command line and environment of a Celery worker for steep."""

from __future__ import annotations

import os
import socket
import sys
import uuid

from services.settings import Settings

__all__ = ["BLAS_THREAD_VARIABLES", "blas_environment", "unique_hostname", "worker_command"]

# Read by OpenBLAS, MKL and OpenMP when NumPy loads them, before any pool exists.
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def blas_environment(threads: int) -> dict[str, str]:
    """Return the environment variables that size the BLAS thread pools of a new process."""
    return dict.fromkeys(BLAS_THREAD_VARIABLES, str(threads))


def unique_hostname() -> str:
    """Return a Celery node name no other worker uses, even on the same machine."""
    return f"steep-{os.getpid()}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"


def worker_command(
    settings: Settings,
    *,
    concurrency: int | None = None,
    pool: str | None = None,
    hostname: str | None = None,
) -> list[str]:
    """Return the command that starts a Celery worker process running steep's jobs.

    One process (``concurrency`` 1) uses the solo pool, where a warm shutdown hands
    the running job back to the queue; more use the prefork pool.
    Gossip, mingle and heartbeats are off, because steep's workers coordinate
    through the database and the SQLite broker has no broadcast exchange.
    """
    processes = concurrency or settings.worker_concurrency
    # Celery prints its banner with print(), so a worker with JSON logs starts without it.
    quiet = ["--quiet"] if settings.log_json else []
    return [
        sys.executable,
        "-m",
        "services.worker",
        *quiet,
        "worker",
        f"--concurrency={processes}",
        f"--pool={pool or ('solo' if processes == 1 else 'prefork')}",
        f"--hostname={hostname or unique_hostname()}",
        f"--loglevel={settings.log_level.upper()}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
