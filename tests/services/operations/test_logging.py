"""Context fields on log records: job id and attempt in the worker, request id in the API."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from services.api.app import create_app
from services.logging_setup import TextFormatter, configure_logging, log_context
from services.settings import Settings
from services.worker.runner import run_job
from tests.services.auth import client_for
from tests.services.worker.helpers import TEA_SPEC, create_job


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """Put the root logger's handlers and level back after a test that reconfigures it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _json_entries(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_job_log_lines_carry_job_and_attempt(
    settings: Settings, capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    """Every JSON line about a job that the runner writes names its job_id and attempt."""
    job_id = create_job(settings, TEA_SPEC)
    configure_logging(settings.model_copy(update={"log_json": True}))

    assert run_job(job_id, worker_id="test-worker", settings=settings) == "succeeded"
    logging.getLogger("steep.test").info("after the job")

    entries = _json_entries(capsys.readouterr().err)
    about_job = [entry for entry in entries if job_id in entry["message"]]
    assert len(about_job) >= 2
    for entry in about_job:
        assert (entry["job_id"], entry["attempt"]) == (job_id, 1)
    [after] = [entry for entry in entries if entry["message"] == "after the job"]
    assert "job_id" not in after


def test_request_log_lines_carry_request_id(
    settings: Settings, capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    """A line logged while the API serves a request carries that request's id."""
    configure_logging(settings.model_copy(update={"log_json": True}))

    with client_for(create_app(settings)) as client:
        response = client.post("/v1/jobs", json=TEA_SPEC, headers={"X-Request-ID": "req-42"})

    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    entries = _json_entries(capsys.readouterr().err)
    [queued] = [entry for entry in entries if job_id in entry["message"]]
    assert queued["request_id"] == "req-42"


def test_text_lines_end_with_context() -> None:
    """The text format appends the context fields a record carries, and nothing without them."""
    formatter = TextFormatter()
    plain = logging.LogRecord("steep.test", logging.INFO, __file__, 1, "hello", None, None)
    with_context = logging.LogRecord("steep.test", logging.INFO, __file__, 1, "hello", None, None)
    with_context.job_id, with_context.attempt = "j1", 2

    assert formatter.format(plain).endswith("steep.test: hello")
    assert formatter.format(with_context).endswith("steep.test: hello [job_id=j1 attempt=2]")


def test_log_context_rejects_unknown_field() -> None:
    """log_context names the field it does not know and the ones it does."""
    with pytest.raises(ValueError, match="api_key"), log_context(api_key="x"):
        pass
