"""``steep datasets upload`` and ``steep datasets ls`` against an API server in a child process."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from services.cli import app
from tests.services.datasets.conftest import StartServer
from tests.services.datasets.helpers import churn_csv

runner = CliRunner()


def test_upload_then_list(start_server: StartServer, tmp_path: Path) -> None:
    """An uploaded CSV is printed with its id and columns, and ls lists it after the built-ins."""
    server = start_server()
    data = tmp_path / "churn.csv"
    data.write_bytes(churn_csv())
    upload = ["datasets", "upload", str(data), "--target", "churn", "--url", server.url]

    as_json = runner.invoke(app, [*upload, "--name", "churn", "--json"])
    again = runner.invoke(app, upload)
    listed = runner.invoke(app, ["datasets", "ls", "--url", server.url, "--json"])

    assert as_json.exit_code == 0, as_json.output
    dataset = json.loads(as_json.stdout)
    assert (dataset["name"], dataset["task"]) == ("churn", "classification")
    assert again.exit_code == 0, again.output
    assert f"dataset {dataset['id']} ('churn')" in again.stdout
    assert "text column city: 4 categories" in again.stdout
    assert listed.exit_code == 0, listed.output
    ids = [item["id"] for item in json.loads(listed.stdout)]
    assert ids[0] == "builtin:tea"
    assert ids[-1] == dataset["id"]


def test_upload_rejected_file_exits_2(start_server: StartServer, tmp_path: Path) -> None:
    """A file the service rejects exits 2 and prints the service's message."""
    server = start_server()
    data = tmp_path / "ragged.csv"
    data.write_text("a,b,y\n1,2,0\n3,4\n")

    result = runner.invoke(app, ["datasets", "upload", str(data), "--url", server.url])

    assert result.exit_code == 2
    assert "line 3 has 2 values" in result.stderr


def test_upload_missing_file_exits_2(tmp_path: Path) -> None:
    """A path that is not a file exits 2 before any request."""
    result = runner.invoke(app, ["datasets", "upload", str(tmp_path / "nope.csv")])

    assert result.exit_code == 2
    assert "no such file" in result.stderr
