"""What the remote CLI commands print, against canned API responses (no service runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from services.cli import app, remote
from services.client import Client, Job
from services.client_progress import JobProgressLines

URL = "http://steep.test"
JOB_ID = "0123456789abcdef0123456789abcdef"
SWEEP_ID = "fedcba9876543210fedcba9876543210"

Handler = Callable[[httpx.Request], httpx.Response]
runner = CliRunner()


def job_json(status: str, epoch: int, epochs: int = 3, **fields: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "status": status,
        "progress": {"epoch": epoch, "epochs": epochs},
        "metrics": {"train_loss": 0.5 / (epoch + 1), "val_loss": 0.6 / (epoch + 1)},
        **fields,
    }


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Handler], None]]:
    """Point the CLI's client at a handler that returns canned responses."""

    def install(handler: Handler) -> None:
        transport = httpx.MockTransport(handler)
        monkeypatch.setattr(remote, "new_client", lambda url: Client(URL, transport=transport))

    yield install


def invoke(*args: str) -> Any:
    return runner.invoke(app, [*args, "--url", URL], env={"COLUMNS": "200"})


# Progress in a log ----------------------------------------------------------------------


def test_progress_lines_throttled() -> None:
    """Plain lines come at status changes, the last epoch, and otherwise every interval."""
    console = Console(record=True, width=200, force_terminal=False)
    now = [0.0]
    lines = JobProgressLines(console, interval=5.0, clock=lambda: now[0])

    for second, epoch in ((0, 0), (1, 1), (2, 2), (6, 3), (7, 4), (8, 10)):
        now[0] = float(second)
        lines.update(Job.from_json(job_json("running", epoch, epochs=10)))
    now[0] = 9.0
    lines.update(Job.from_json(job_json("succeeded", 10, epochs=10)))

    printed = console.export_text().splitlines()
    assert [line.split("  ")[:2] for line in printed] == [
        ["running", "epoch 0/10"],
        ["running", "epoch 3/10"],
        ["running", "epoch 10/10"],
        ["succeeded", "epoch 10/10"],
    ]
    assert "train_loss 0.125  val_loss 0.15" in printed[1]
    assert printed[1].endswith("  6 s")


def test_watch_without_terminal_prints_lines(serve: Callable[[Handler], None]) -> None:
    """jobs watch into a file or pipe prints the epoch and losses as plain lines."""
    states = [job_json("running", 1), job_json("succeeded", 3)]
    serve(lambda request: httpx.Response(200, json=states.pop(0) if len(states) > 1 else states[0]))

    result = invoke("jobs", "watch", JOB_ID)

    assert result.exit_code == 0, result.output
    assert "running  epoch 1/3  train_loss 0.25  val_loss 0.3" in result.stderr
    assert "succeeded  epoch 3/3  train_loss 0.125  val_loss 0.15" in result.stderr


def sweep_json(status: str, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": SWEEP_ID,
        "experiment": "default",
        "status": status,
        "method": "grid",
        "objective": {"mode": "min", "metric": "val_loss"},
        "max_parallel": 2,
        "n_trials": 2,
        "counts": counts,
    }


def test_sweep_wait_without_terminal_prints_lines(
    serve: Callable[[Handler], None], tmp_path: Path
) -> None:
    """sweep --wait into a file or pipe prints the sweep's status as plain lines."""
    path = tmp_path / "sweep.json"
    path.write_text("{}")
    states = [
        sweep_json("running", {"queued": 2}),
        sweep_json("running", {"running": 2}),
        sweep_json("succeeded", {"succeeded": 2}),
    ]
    serve(lambda request: httpx.Response(200, json=states.pop(0) if len(states) > 1 else states[0]))

    result = invoke("sweep", str(path), "--wait")

    assert result.exit_code == 0, result.output
    assert f"sweep {SWEEP_ID} (grid): running, 2 trials (2 running)" in result.stderr
    assert f"sweep {SWEEP_ID} (grid): succeeded, 2 trials (2 succeeded)" in result.stderr


# Job summary ----------------------------------------------------------------------------


def test_outcome_keeps_job_id_whole(serve: Callable[[Handler], None]) -> None:
    """A failed job's summary has its id whole on one line, and the best value rounded."""
    failed = job_json(
        "failed",
        1,
        stop_reason="diverged",
        metrics={},
        best={"epoch": 1, "monitor": "val_loss", "value": 0.23084751724492966},
    )
    serve(lambda request: httpx.Response(200, json=failed))

    result = invoke("jobs", "watch", JOB_ID)

    assert result.exit_code == 1
    assert f"job {JOB_ID}\n" in result.stdout
    assert "best val_loss" in result.stdout
    assert "0.230848" in result.stdout
    assert "0.23084751724492966" not in result.stdout


def test_cancel_running_names_batch_end(serve: Callable[[Handler], None]) -> None:
    serve(lambda request: httpx.Response(200, json=job_json("running", 1, cancel_requested=True)))

    result = invoke("jobs", "cancel", JOB_ID)

    assert result.exit_code == 0, result.output
    assert "flush" not in result.stdout
    assert "stops at the end of its current batch" in result.stdout


# Empty lists ----------------------------------------------------------------------------


def test_filtered_jobs_none_match(serve: Callable[[Handler], None]) -> None:
    serve(lambda request: httpx.Response(200, json={"items": [], "next_cursor": None}))

    filtered = invoke("jobs", "--status", "failed")
    unfiltered = invoke("jobs")

    assert filtered.exit_code == 0, filtered.output
    assert filtered.stdout == "no jobs match the filters\n"
    assert unfiltered.stdout == f"no jobs on {URL} yet\n"


def test_filtered_sweeps_none_match(serve: Callable[[Handler], None]) -> None:
    serve(lambda request: httpx.Response(200, json={"items": [], "next_cursor": None}))

    filtered = invoke("sweeps", "--status", "failed")
    unfiltered = invoke("sweeps")

    assert filtered.exit_code == 0, filtered.output
    assert filtered.stdout == "no sweeps match the filters\n"
    assert unfiltered.stdout == f"no sweeps on {URL} yet\n"


# Dataset upload -------------------------------------------------------------------------


DATASET = {
    "id": "ds_0123456789abcdef",
    "name": "tea",
    "task": "regression",
    "n_samples": 3,
    "n_features": 1,
    "n_outputs": 1,
    "target_names": ["y"],
}


@pytest.mark.parametrize("status", [201, 200])
def test_upload_reports_already_stored(
    serve: Callable[[Handler], None], tmp_path: Path, status: int
) -> None:
    """A 200 (the same bytes were stored before) prints the stored dataset's id as already
    stored; a 201 does not."""
    path = tmp_path / "tea.csv"
    path.write_text("x,y\n1,2\n2,4\n3,6\n")
    serve(lambda request: httpx.Response(status, json=DATASET))

    result = invoke("datasets", "upload", str(path))

    assert result.exit_code == 0, result.output
    already = f"is already stored as dataset {DATASET['id']}"
    assert (already in result.stdout) == (status == 200)
    assert f'"dataset": "{DATASET["id"]}"' in result.stdout
