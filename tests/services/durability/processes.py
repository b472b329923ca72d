"""Real steep processes for the durability tests: workers, reapers and the API, each with a log.

A test starts them through the ``processes`` fixture, which kills every one it
started (by its PID) when the test ends. Each process reads the ``STEEP_*``
variables the ``configure`` fixture exported, plus the settings given to ``start``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.settings import Settings
from services.worker.process import blas_environment, worker_command
from tests.services.worker.helpers import read_job, wait_for

STEEP = [sys.executable, "-c", "from services.cli import main; main()"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    """One started process and the file its output goes to."""

    def __init__(
        self, name: str, command: list[str], log_path: Path, environment: dict[str, str]
    ) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Worker(ServiceProcess):
    """A Celery worker whose node name identifies it in ``jobs.worker_id``."""

    def __init__(
        self, name: str, hostname: str, command: list[str], log_path: Path, env: dict[str, str]
    ) -> None:
        super().__init__(name, command, log_path, env)
        self.hostname = hostname

    def holds(self, worker_id: str | None) -> bool:
        """Whether ``worker_id`` (``hostname/pid``) names one of this worker's processes."""
        return worker_id is not None and worker_id.split("/")[0] == self.hostname


class Processes:
    """Starts steep's processes for one test and kills them all at its end."""

    def __init__(self, folder: Path, current_settings: Callable[[], Settings]) -> None:
        """``current_settings`` returns the settings in force when a process starts."""
        self.folder = folder
        self.current_settings = current_settings
        self.started: list[ServiceProcess] = []

    @property
    def settings(self) -> Settings:
        return self.current_settings()

    def worker(
        self, name: str, *, concurrency: int = 1, pool: str = "solo", **settings: Any
    ) -> Worker:
        """Start a worker; ``settings`` override this process's STEEP_* values."""
        hostname = f"{name}-{uuid.uuid4().hex[:6]}@durability"
        command = worker_command(
            self.settings, concurrency=concurrency, pool=pool, hostname=hostname
        )
        started = Worker(name, hostname, command, self._log_path(name), self._env(settings))
        self.started.append(started)
        return started

    def reaper(self, name: str = "reaper", **settings: Any) -> ServiceProcess:
        return self.start(name, [*STEEP, "reaper"], **settings)

    def api(self, port: int, name: str = "api", **settings: Any) -> ServiceProcess:
        """Start ``steep api`` on ``port`` and wait until /healthz returns 200."""
        started = self.start(name, [*STEEP, "api", "--port", str(port)], **settings)
        base_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(base_url) or not started.is_running(), timeout=60)
        assert started.is_running(), started.output()
        return started

    def start(self, name: str, command: list[str], **settings: Any) -> ServiceProcess:
        started = ServiceProcess(name, command, self._log_path(name), self._env(settings))
        self.started.append(started)
        return started

    def holder(self, job_id: str) -> Worker:
        """Return the started worker that runs ``job_id`` now."""
        worker_id = read_job(self.settings, job_id).worker_id
        for started in self.started:
            if isinstance(started, Worker) and started.holds(worker_id):
                return started
        raise AssertionError(f"no started worker runs job {job_id} (worker_id {worker_id!r})")

    def logs(self) -> str:
        """Every process's output, for assertion messages."""
        parts = [f"===== {started.name} =====\n{started.output()}" for started in self.started]
        return "\n".join(parts)

    def kill_all(self) -> None:
        for started in self.started:
            started.kill()

    def _log_path(self, name: str) -> Path:
        return self.folder / f"{name}-{len(self.started)}.log"

    def _env(self, settings: dict[str, Any]) -> dict[str, str]:
        environment = {**os.environ, **blas_environment(1)}
        for name, value in settings.items():
            environment[f"STEEP_{name.upper()}"] = str(value)
        return environment


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
