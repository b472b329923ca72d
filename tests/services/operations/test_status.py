"""``steep status`` reads the deployment's database directly, in each mode."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.cli import status as status_command
from services.settings import Settings
from services.store import runs, workers
from services.store.workers import WorkerIdentity
from tests.services.worker.helpers import TEA_SPEC, create_job


def test_status_json_shows_running_and_queue(settings: Settings) -> None:
    """--json lists the live worker with its job, the running job, and the queue depth."""
    url = settings.resolved_database_url
    running_id = create_job(settings, TEA_SPEC, tenant="alpha")
    create_job(settings, TEA_SPEC)
    create_job(settings, TEA_SPEC)
    identity = WorkerIdentity(id="node@host/42", hostname="host", pid=42)
    workers.report_alive(identity, running_id, starting=True, database_url=url)
    assert runs.claim(running_id, identity.id, 10.0, database_url=url) is not None

    result = CliRunner().invoke(app, ["status", "--json"])

    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["queue_depth"] == 2
    assert status["jobs_by_status"]["running"] == 1
    assert [(w["id"], w["pid"], w["job_id"]) for w in status["workers_alive"]] == [
        ("node@host/42", 42, running_id)
    ]
    [job] = status["running_jobs"]
    assert (job["id"], job["tenant"], job["worker_id"]) == (running_id, "alpha", identity.id)
    assert (job["epoch"], job["epochs"], job["attempt"]) == (0, 1, 1)


def test_status_table_names_running_job(settings: Settings) -> None:
    """Without --json the tables show the running job's id and epoch on a wide terminal."""
    running_id = create_job(settings, TEA_SPEC)
    url = settings.resolved_database_url
    assert runs.claim(running_id, "node@host/7", 10.0, database_url=url) is not None

    result = CliRunner().invoke(app, ["status"], env={"COLUMNS": "160"})

    assert result.exit_code == 0, result.output
    assert running_id in result.output
    assert "0/1" in result.output
    assert "Queue depth: 0" in result.output


def test_status_rate_has_thousands_separators(capsys: pytest.CaptureFixture[str]) -> None:
    """samples/s prints as a whole number with separators, not in exponent notation."""
    running = {
        "id": "job-1",
        "tenant": "alpha",
        "epoch": 2,
        "epochs": 5,
        "attempt": 1,
        "worker_id": "node@host/7",
        "samples_per_second": 378_312.4,
    }
    content = {
        "workers_alive": [],
        "queue_depth": 0,
        "running_jobs": [running],
        "jobs_by_status": {"running": 1},
    }

    status_command._print_status(content)

    output = capsys.readouterr().out
    assert "378,312" in output
    assert "e+05" not in output
