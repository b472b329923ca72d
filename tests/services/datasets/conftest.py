"""Fixtures for the dataset tests: an API client with a small upload limit, and a trainer.

The ``configure`` fixture (``tests/services/conftest.py``) runs each test in the
embedded mode (SQLite) and the distributed mode (PostgreSQL and Redis). Jobs are
trained by calling the worker's ``run_job`` in the test process.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.settings import Settings
from services.worker.runner import run_job
from tests.services.auth import bearer, client_for
from tests.services.conftest import Configure

# Small enough that an oversize upload is quick to build, large enough for every fixture.
TEST_UPLOAD_LIMIT = 1 << 20

Train = Callable[[str], str]


@pytest.fixture
def settings(configure: Configure) -> Settings:
    """Settings for this mode, with a 1 MiB upload limit."""
    return configure(max_upload_bytes=TEST_UPLOAD_LIMIT)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client for an app on this mode's database and broker."""
    with client_for(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def train(settings: Settings) -> Train:
    """Return a function that trains a queued job to its end and returns its final status."""

    def train_job(job_id: str) -> str:
        return run_job(job_id, worker_id="test-worker", settings=settings)

    return train_job


@dataclass(frozen=True)
class LiveServer:
    """An API server in a child process: its base URL and process id."""

    url: str
    pid: int
    headers: dict[str, str]


StartServer = Callable[..., LiveServer]


@pytest.fixture
def start_server(configure: Configure) -> Iterator[StartServer]:
    """Return a function that starts the API with settings overrides in a child process.

    The child runs uvicorn on a free port of 127.0.0.1 and reads the settings that
    ``configure`` exported; it is stopped when the test ends.
    """
    processes: list[subprocess.Popen[bytes]] = []

    def start(**overrides: Any) -> LiveServer:
        settings = configure(**overrides)
        assert settings.api_key is not None
        port = _free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "services.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        process = subprocess.Popen(command)
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url, process)
        return LiveServer(url, process.pid, bearer(settings.api_key.get_secret_value()))

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the API server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the API server at {url} did not answer within {timeout} s")
