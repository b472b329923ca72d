"""The Celery task wrapper, the worker command line and the logging setup."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest

from services.logging_setup import JsonFormatter, configure_logging
from services.settings import Settings
from services.worker.celery_app import RUN_JOB_TASK, celery_app
from services.worker.process import blas_environment, unique_hostname, worker_command
from services.worker.tasks import run_job_task
from tests.services.worker.helpers import TEA_SPEC, create_job, read_job


def test_task_registered_and_runs(settings: Settings) -> None:
    """The app registers steep.run_job, and running it trains the job in this process."""
    job_id = create_job(settings, TEA_SPEC)
    task = celery_app().tasks[RUN_JOB_TASK]

    result = task.apply(args=[job_id])

    assert task.name == run_job_task.name == RUN_JOB_TASK
    assert result.get() == "succeeded"
    job = read_job(settings, job_id)
    assert job.status == "succeeded"
    assert job.worker_id is not None and job.worker_id.endswith(f"/{os.getpid()}")


def test_worker_command_pool_by_concurrency() -> None:
    """One process uses the solo pool; more use prefork; both run this interpreter."""
    settings = Settings(worker_concurrency=3)

    single = worker_command(settings, concurrency=1)
    several = worker_command(settings)

    assert single[:4] == [sys.executable, "-m", "services.worker", "worker"]
    assert "--pool=solo" in single
    assert "--concurrency=1" in single
    assert "--pool=prefork" in several
    assert "--concurrency=3" in several
    assert worker_command(settings, pool="solo", concurrency=2).count("--pool=solo") == 1


def test_hostnames_unique() -> None:
    """Two workers started from one process get different node names."""
    assert unique_hostname() != unique_hostname()


def test_blas_environment_sets_every_pool() -> None:
    """The BLAS variables cover OpenMP, OpenBLAS and MKL with the same count."""
    assert blas_environment(2) == {
        "OMP_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
    }


def test_json_log_lines() -> None:
    """The JSON formatter writes one object with the message and the logger's name."""
    record = logging.LogRecord(
        "steep.test", logging.INFO, __file__, 1, "job %s done", ("a1",), exc_info=None
    )

    entry = json.loads(JsonFormatter().format(record))

    assert entry["message"] == "job a1 done"
    assert entry["logger"] == "steep.test"
    assert entry["level"] == "INFO"


def test_invalid_log_level_rejected() -> None:
    """configure_logging names the bad level and the valid ones."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    with pytest.raises(ValueError, match="LOUD"):
        configure_logging(Settings(log_level="LOUD"))

    assert root.handlers == handlers
    assert root.level == level
