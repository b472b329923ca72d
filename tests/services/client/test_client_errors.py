"""The text of the client's errors, and the CLI's exit code for each kind of error."""

from __future__ import annotations

import pytest

from services.cli.remote import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    exit_code_for,
)
from services.client import SteepError, UnreachableError, error_for

LR_SENTENCE = "optimizer.lr: Input should be greater than 0, got -1"


def test_unreachable_message_has_no_status() -> None:
    error = UnreachableError("http://127.0.0.1:9", "Connection refused")

    assert error.status == 0
    assert str(error).startswith("cannot reach steep at http://127.0.0.1:9: Connection refused")


def test_message_starts_with_status() -> None:
    error = error_for(404, {"detail": "job 'abc' not found"})

    assert str(error) == "404: job 'abc' not found"


def test_validation_message_names_error_once() -> None:
    problem = {
        "detail": LR_SENTENCE,
        "errors": [{"loc": ["body", "optimizer", "lr"], "msg": LR_SENTENCE}],
    }

    message = str(error_for(422, problem))

    assert message == f"422: {LR_SENTENCE}"
    assert message.count("Input should be greater than 0") == 1


def test_validation_message_lists_each_error() -> None:
    units = "model.layers[0].units: Input should be greater than 0, got 0"
    problem = {
        "detail": f"{units}; {LR_SENTENCE}",
        "errors": [
            {"loc": ["body", "model", "layers", 0, "units"], "msg": units},
            {"loc": ["body", "optimizer", "lr"], "msg": LR_SENTENCE},
        ],
    }

    lines = str(error_for(422, problem)).splitlines()

    assert lines == ["422: 2 errors in the request:", f"  {units}", f"  {LR_SENTENCE}"]


def test_validation_message_adds_missing_location() -> None:
    problem = {
        "detail": "Input should be a valid integer",
        "errors": [
            {"loc": ["body", "training", "epochs"], "msg": "Input should be a valid integer"},
            {"loc": ["query", "limit"], "msg": "Input should be at most 500"},
        ],
    }

    lines = str(error_for(422, problem)).splitlines()

    assert lines[1] == "  training.epochs: Input should be a valid integer"
    assert lines[2] == "  query parameter limit: Input should be at most 500"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, EXIT_BAD_INPUT),
        (401, EXIT_BAD_INPUT),
        (404, EXIT_NOT_FOUND),
        (409, EXIT_FAILED),
        (413, EXIT_BAD_INPUT),
        (422, EXIT_BAD_INPUT),
        (429, EXIT_BAD_INPUT),
        (500, EXIT_UNREACHABLE),
        (503, EXIT_UNREACHABLE),
    ],
)
def test_exit_code_for_status(status: int, expected: int) -> None:
    assert exit_code_for(error_for(status, {"detail": "any"})) == expected


def test_exit_code_for_unreachable() -> None:
    error: SteepError = UnreachableError("http://127.0.0.1:9", "Connection refused")

    assert exit_code_for(error) == EXIT_UNREACHABLE
