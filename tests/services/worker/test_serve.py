"""``steep serve`` as a user runs it: start, serve requests, train a job, stop on a signal."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.services.worker.helpers import TEA_SPEC, wait_for

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("services.api.app") is None,
    reason="steep serve needs the API app in services.api.app",
)

STEEP = [sys.executable, "-c", "from services.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment() -> dict[str, str]:
    """This process's environment without STEEP_* values that other tests exported."""
    return {name: value for name, value in os.environ.items() if not name.startswith("STEEP_")}


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_trains_job_and_stops_on_sigint(tmp_path: Path) -> None:
    """steep serve serves /healthz, runs a submitted job, and exits 0 on SIGINT."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    command = [*STEEP, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=_environment(), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: _healthy(base_url) or process.poll() is not None, timeout=60)
        assert process.poll() is None, log_path.read_text()
        created = httpx.post(f"{base_url}/v1/jobs", json=TEA_SPEC, timeout=10)
        assert created.status_code == 202, created.text
        job_url = f"{base_url}/v1/jobs/{created.json()['id']}"
        wait_for(lambda: httpx.get(job_url, timeout=5).json()["status"] == "succeeded", timeout=60)

        process.send_signal(signal.SIGINT)
        exit_code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    output = log_path.read_text()
    assert exit_code == 0, output
    assert "steep stopped" in output
    assert f"steep is running at {base_url}" in output
    assert not (tmp_path / "data" / "serve.pid").exists()
    assert not _healthy(base_url)


def test_serve_detach_and_stop(tmp_path: Path) -> None:
    """steep serve --detach returns once the service is up; --stop ends it.

    The public URL names a host behind a proxy that does not exist (the .invalid
    domain never resolves), so readiness must be checked where the API listens, and
    the proxy's outside users make keys required.
    """
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    options = ["--port", str(port), "--data-dir", str(data_dir)]
    behind_proxy = {**_environment(), "STEEP_PUBLIC_URL": "https://steep.invalid"}

    started = subprocess.run(
        [*STEEP, "serve", "--detach", *options],
        env=behind_proxy,
        capture_output=True,
        text=True,
        timeout=120,
    )
    pid = int((data_dir / "serve.pid").read_text()) if started.returncode == 0 else None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert _healthy(base_url)
        assert httpx.get(f"{base_url}/v1/jobs", timeout=5.0).status_code == 401
        again = subprocess.run(
            [*STEEP, "serve", *options], env=_environment(), capture_output=True, text=True
        )
        stopped = subprocess.run(
            [*STEEP, "serve", "--stop", *options],
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        if pid is not None and _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    assert "API keys required" in started.stdout
    assert f"stop it with `steep serve --stop --data-dir {data_dir}`" in started.stdout
    assert again.returncode == 1
    assert "already running" in again.stderr
    assert f"`steep serve --stop --data-dir {data_dir}`" in again.stderr
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert pid is not None and not _pid_alive(pid)
    deadline = time.monotonic() + 5
    while _healthy(base_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _healthy(base_url)
