"""A real Celery worker process, in each mode: messages in, finished jobs out, clean shutdown."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.settings import Settings
from services.worker.enqueue import enqueue_job
from services.worker.process import worker_command
from services.worker.reaper import reap_once
from tests.services.conftest import Configure
from tests.services.worker.helpers import (
    TEA_SPEC,
    age_job,
    create_job,
    long_spec,
    read_job,
    read_transitions,
    wait_for,
)


class _Worker:
    """A ``python -m services.worker`` process with its output in a file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        # The configure fixture exported the settings, so the child reads the same ones.
        self.process = subprocess.Popen(
            worker_command(settings), stdout=self.log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def worker_settings(configure: Configure) -> Settings:
    return configure(requeue_after_seconds=1.0)


@pytest.fixture
def worker(worker_settings: Settings, tmp_path: Path) -> Iterator[_Worker]:
    started = _Worker(worker_settings, tmp_path / "worker.log")
    yield started
    started.stop()


def _status(settings: Settings, job_id: str) -> str:
    return read_job(settings, job_id).status


def test_worker_process_runs_jobs(worker_settings: Settings, worker: _Worker) -> None:
    """Jobs go queued -> succeeded through the broker, also when the reaper resends a message."""
    settings = worker_settings
    sent_id = create_job(settings, TEA_SPEC)
    dropped_id = create_job(settings, TEA_SPEC)
    age_job(settings, dropped_id, 5.0)

    assert enqueue_job(sent_id)
    wait_for(lambda: _status(settings, sent_id) == "succeeded", timeout=60)
    report = reap_once(settings)
    wait_for(lambda: _status(settings, dropped_id) == "succeeded", timeout=60)

    assert report.resent == [dropped_id], worker.output()
    for job_id in (sent_id, dropped_id):
        job = read_job(settings, job_id)
        assert job.metrics["train_loss"] == 81.0
        assert job.worker_id is not None and job.worker_id.startswith("steep-")
        assert [t.status for t in read_transitions(settings, job_id)] == [
            "queued",
            "running",
            "succeeded",
        ]


def test_worker_sigterm_releases_job(worker_settings: Settings, worker: _Worker) -> None:
    """SIGTERM stops the worker promptly and hands its running job back to the queue."""
    settings = worker_settings
    job_id = create_job(settings, long_spec())
    assert enqueue_job(job_id)
    wait_for(lambda: read_job(settings, job_id).epoch >= 1, timeout=60)

    worker.process.send_signal(signal.SIGTERM)
    exit_code = worker.process.wait(30)

    assert exit_code == 0, worker.output()
    job = read_job(settings, job_id)
    assert (job.status, job.worker_id) == ("queued", None)
    last = read_transitions(settings, job_id)[-1]
    assert last.status == "queued"
    assert "shut down" in (last.reason or "")
