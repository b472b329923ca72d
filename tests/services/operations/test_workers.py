"""Worker presence in each mode: a real worker process reports itself, its job and its
stop, and logs its job's lines as JSON with the job id and attempt."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from services.api.app import create_app
from services.settings import Settings
from services.store import counters, workers
from services.store.db import session_scope
from services.store.models import ServiceCounter, WorkerRow, utcnow
from services.store.workers import WorkerIdentity
from services.worker.enqueue import enqueue_job
from services.worker.process import worker_command
from tests.services.conftest import Configure
from tests.services.durability.checks import digits_spec_lasting
from tests.services.operations.helpers import operator_client, read_metrics, value
from tests.services.worker.helpers import TEA_SPEC, create_job, read_job, wait_for


def _alive_rows(settings: Settings) -> list[WorkerRow]:
    with session_scope(settings.resolved_database_url, write=False) as session:
        return workers.alive_workers(session)


def _all_rows(settings: Settings) -> list[WorkerRow]:
    with session_scope(settings.resolved_database_url, write=False) as session:
        return list(session.scalars(select(WorkerRow)))


def _json_lines(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def test_worker_process_presence_and_job_logs(configure: Configure, tmp_path: Path) -> None:
    """A worker counts as alive from its start until its clean stop, and every JSON log
    line it writes for a job carries the job's id and attempt."""
    settings = configure(log_json=True)
    log_path = tmp_path / "worker.log"
    app = create_app(settings)
    with operator_client(app) as operator, log_path.open("wb") as log:
        idle = read_metrics(operator)
        process = subprocess.Popen(worker_command(settings), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: len(_alive_rows(settings)) == 1, timeout=60)
            started = read_metrics(operator)
            job_id = create_job(settings, TEA_SPEC)
            assert enqueue_job(job_id)
            wait_for(lambda: read_job(settings, job_id).status == "succeeded", timeout=60)
            process.send_signal(signal.SIGTERM)
            exit_code = process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        stopped = read_metrics(operator)

    assert exit_code == 0, log_path.read_text(errors="replace")
    assert value(idle, "steep_workers_alive") == 0
    assert value(started, "steep_workers_alive") == 1
    assert value(stopped, "steep_workers_alive") == 0
    assert _alive_rows(settings) == []
    text = log_path.read_text(errors="replace")
    plain = [line for line in text.splitlines() if line.strip() and not line.startswith("{")]
    # Celery prints this one line itself, with no way to turn it off.
    assert plain == ["worker: Warm shutdown (MainProcess)"], text
    job_lines = [entry for entry in _json_lines(log_path) if job_id in entry["message"]]
    assert len(job_lines) >= 2, log_path.read_text(errors="replace")
    for entry in job_lines:
        assert entry["job_id"] == job_id, entry
        assert entry["attempt"] == 1, entry
    rows = _all_rows(settings)
    assert len(rows) == 1
    assert rows[0].stopped_at is not None
    assert rows[0].job_id is None
    assert read_job(settings, job_id).worker_id == rows[0].id


def test_silent_worker_not_alive(settings: Settings) -> None:
    """A worker that stops refreshing its row drops out of the live workers on its own."""
    identity = WorkerIdentity(id="node@host/123", hostname="host", pid=123)
    workers.report_alive(
        identity, "job-1", starting=True, database_url=settings.resolved_database_url
    )
    alive = _alive_rows(settings)

    silent_since = utcnow() - timedelta(seconds=workers.ALIVE_SECONDS + 1)
    with session_scope(settings.resolved_database_url) as session:
        session.execute(update(WorkerRow).values(last_seen_at=silent_since))

    assert [(row.id, row.job_id) for row in alive] == [("node@host/123", "job-1")]
    assert _alive_rows(settings) == []


def test_prune_keeps_counter_totals(settings: Settings) -> None:
    """Deleting a long-stopped worker folds its counter rows into the shared ones."""
    url = settings.resolved_database_url
    old = WorkerIdentity(id="old@host/1", hostname="host", pid=1)
    recent = WorkerIdentity(id="recent@host/2", hostname="host", pid=2)
    for identity in (old, recent):
        workers.report_alive(identity, None, starting=True, database_url=url)
        with session_scope(url) as session:
            counters.add_counts(session, {counters.EPOCHS_TRAINED: 5}, source=identity.id)
        workers.mark_stopped(identity.id, database_url=url)
    long_ago = utcnow() - timedelta(seconds=workers.PRUNE_AFTER_SECONDS + 60)
    with session_scope(url) as session:
        session.execute(
            update(WorkerRow)
            .where(WorkerRow.id == old.id)
            .values(stopped_at=long_ago, last_seen_at=long_ago)
        )

    pruned = workers.prune_workers(database_url=url)

    assert pruned == [old.id]
    with session_scope(url, write=False) as session:
        remaining = list(session.scalars(select(WorkerRow.id)))
        counter_rows = list(session.scalars(select(ServiceCounter.name)))
        totals = counters.read_counters(session)
    assert remaining == [recent.id]
    assert totals[counters.EPOCHS_TRAINED] == 10
    assert len(counter_rows) == 2
    assert counters.EPOCHS_TRAINED in counter_rows


def test_worker_row_shows_running_job(configure: Configure, tmp_path: Path) -> None:
    """While a solo worker trains a job, its row names the job at every refresh, because
    the process reports itself from one presence thread only."""
    settings = configure()
    log_path = tmp_path / "worker.log"
    refresh_seconds = workers.HEARTBEAT_SECONDS
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            worker_command(settings, concurrency=1), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for(lambda: len(_alive_rows(settings)) == 1, timeout=60)
            job_id = create_job(settings, digits_spec_lasting(3 * refresh_seconds))
            assert enqueue_job(job_id)
            wait_for(lambda: read_job(settings, job_id).status == "running", timeout=60)
            seen = []
            deadline = time.monotonic() + refresh_seconds + 2
            while time.monotonic() < deadline and read_job(settings, job_id).status == "running":
                seen.append(_alive_rows(settings)[0].job_id)
                time.sleep(0.25)
        finally:
            process.kill()
            process.wait(10)

    assert len(seen) >= 4 * refresh_seconds
    # The row is written when the job starts, which may fall just after the first read.
    assert set(seen[1:]) == {job_id}
    assert log_path.read_text(errors="replace").count("reports itself every") == 1
