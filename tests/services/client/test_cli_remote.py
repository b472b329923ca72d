"""The remote CLI commands against a live service: documented exit codes and --json output."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.client import Client, UnreachableError
from tests.services.client.live import IRIS_SPEC, LiveService
from tests.services.client.test_client_session import LONG_SPEC, wait_until_running

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def write_json(path: Path, content: Any) -> Path:
    path.write_text(json.dumps(content))
    return path


def _iris_columns(service: LiveService) -> list[dict[str, Any]]:
    with Client(service.url, service.api_key) as client:
        columns: list[dict[str, Any]] = client.get_dataset("builtin:iris")["columns"]
    return columns


def test_job_commands_exit_codes_and_json(service: LiveService, tmp_path: Path) -> None:
    """submit, jobs, show, history, download, predict, watch and cancel, with their codes."""
    url = ("--url", service.url)
    spec_path = write_json(tmp_path / "spec.json", IRIS_SPEC)
    rows_path = write_json(tmp_path / "rows.json", [[5.1, 3.5, 1.4, 0.2]])
    bad_path = write_json(tmp_path / "bad.json", {**IRIS_SPEC, "dataset": "builtin:nope"})
    invalid_path = write_json(
        tmp_path / "invalid.json", {**IRIS_SPEC, "optimizer": {"type": "adam", "lr": -1}}
    )

    submitted = invoke("submit", str(spec_path), "--wait", "--json", *url)
    job = json.loads(submitted.stdout)
    listed = invoke("jobs", "--status", "succeeded", "--tag", "team:tests", "--json", *url)
    shown = invoke("jobs", "show", job["id"], "--json", *url)
    history = invoke("jobs", "history", job["id"], "--json", *url)
    download = invoke("jobs", "download", job["id"], "-o", str(tmp_path / "w.npz"), *url)
    predicted = invoke("jobs", "predict", job["id"], str(rows_path), "--json", *url)
    csv_path = tmp_path / "rows.csv"
    columns = [column["name"] for column in _iris_columns(service)]
    csv_path.write_text(",".join(["species", *columns]) + "\nsetosa,5.1,3.5,1.4,0.2\n")
    from_csv = invoke("jobs", "predict", job["id"], str(csv_path), "--json", *url)
    watched = invoke("jobs", "watch", job["id"], "--json", *url)
    cancel_finished = invoke("jobs", "cancel", job["id"], *url)
    rejected = invoke("submit", str(bad_path), "--wait", *url)
    invalid = invoke("submit", str(invalid_path), *url)
    missing = invoke("jobs", "show", "no-such-job", *url)
    table = invoke("jobs", *url)

    assert submitted.exit_code == 0, submitted.output
    assert job["status"] == "succeeded"
    assert listed.exit_code == 0, listed.output
    assert [item["id"] for item in json.loads(listed.stdout)] == [job["id"]]
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["transitions"][-1]["status"] == "succeeded"
    assert history.exit_code == 0
    assert json.loads(history.stdout)["epoch"] == list(range(1, 9))
    assert download.exit_code == 0
    assert (tmp_path / "w.npz").read_bytes().startswith(b"PK")
    assert predicted.exit_code == 0
    assert json.loads(predicted.stdout)["predictions"] == ["setosa"]
    assert from_csv.exit_code == 0, from_csv.output  # the target column is left out
    assert json.loads(from_csv.stdout)["predictions"] == ["setosa"]
    assert watched.exit_code == 0
    assert cancel_finished.exit_code == 1  # a 409 is not bad input
    assert "already finished" in cancel_finished.stderr
    assert rejected.exit_code == 2
    assert "builtin:nope" in rejected.stderr
    assert invalid.exit_code == 2
    assert "optimizer.lr" in invalid.stderr
    assert invalid.stderr.count("Input should be greater than 0") == 1, invalid.stderr
    assert missing.exit_code == 4
    assert table.exit_code == 0
    assert job["id"] in table.stdout


def test_cancelled_job_exits_1(service: LiveService) -> None:
    """watch exits 1 for a job that ended cancelled."""
    with Client(service.url, service.api_key) as steep:
        job = steep.submit(LONG_SPEC)
        wait_until_running(steep, job.id)

        cancelled = invoke("jobs", "cancel", job.id, "--json", "--url", service.url)
        watched = invoke("jobs", "watch", job.id, "--url", service.url)

    assert cancelled.exit_code == 0
    assert json.loads(cancelled.stdout)["id"] == job.id
    assert watched.exit_code == 1
    assert "cancelled" in watched.stdout


@pytest.mark.parametrize("command", [("jobs", "show", "any"), ("datasets", "ls")])
def test_unreachable_service_exits_3(command: tuple[str, ...]) -> None:
    """A command whose service does not answer exits 3 after the client's retries."""
    started = time.monotonic()

    result = invoke(*command, "--url", "http://127.0.0.1:9")

    assert result.exit_code == 3
    assert result.stderr.startswith("cannot reach steep at http://127.0.0.1:9"), result.stderr
    assert time.monotonic() - started < 30


def test_client_raises_unreachable_error() -> None:
    """The Python client turns a refused connection into a steep error, not an httpx one."""
    with (
        Client("http://127.0.0.1:9", retries=0) as client,
        pytest.raises(UnreachableError) as raised,
    ):
        client.get("any")

    assert raised.value.status == 0
    assert "is running" in raised.value.detail


def test_sweep_commands_exit_codes_and_json(service: LiveService, tmp_path: Path) -> None:
    """sweep FILE --wait, sweeps, sweeps show and experiments print parseable JSON."""
    url = ("--url", service.url)
    sweep_path = write_json(
        tmp_path / "sweep.json",
        {
            "name": "cli",
            "experiment": "cli-sweeps",
            "base": IRIS_SPEC,
            "parameters": {"optimizer.lr": {"values": [0.05, 0.01]}},
            "max_parallel": 2,
        },
    )
    bad_path = write_json(
        tmp_path / "bad.json",
        {"base": IRIS_SPEC, "parameters": {"optimizer.nope": {"values": [1]}}},
    )

    submitted = invoke("sweep", str(sweep_path), "--wait", "--json", *url)
    sweep = json.loads(submitted.stdout)
    listed = invoke("sweeps", "--json", *url)
    shown = invoke("sweeps", "show", sweep["id"], *url)
    experiments = invoke("experiments", "--json", *url)
    rejected = invoke("sweep", str(bad_path), *url)
    missing = invoke("sweeps", "show", "no-such-sweep", *url)
    cancel_ended = invoke("sweeps", "cancel", sweep["id"], *url)

    assert submitted.exit_code == 0, submitted.output
    assert sweep["status"] == "succeeded"
    assert [entry["parameters"]["optimizer.lr"] for entry in sweep["leaderboard"]] == [0.05, 0.01]
    assert listed.exit_code == 0
    assert [item["id"] for item in json.loads(listed.stdout)] == [sweep["id"]]
    assert shown.exit_code == 0
    assert "2 of 2 trials succeeded" in shown.stdout
    assert experiments.exit_code == 0
    summary = {item["name"]: item for item in json.loads(experiments.stdout)}
    assert summary["cli-sweeps"]["n_jobs"] == 2
    assert summary["cli-sweeps"]["best"]["job_id"] == sweep["leaderboard"][0]["job_id"]
    assert rejected.exit_code == 2
    assert "optimizer.nope" in rejected.stderr
    assert missing.exit_code == 4
    assert cancel_ended.exit_code == 1
