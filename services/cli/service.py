"""Commands that run steep's service processes: ``db upgrade``, ``api``, ``worker``, ``reaper``
and ``serve``, which runs all of them on one machine.

Every process reads its configuration from the ``STEEP_*`` settings. Options given
here (``--port``, ``--data-dir``, ...) are exported as ``STEEP_*`` variables before
anything reads the settings, so child processes see the same values.

Exit codes: 0 on success and after a clean stop by SIGINT or SIGTERM, 1 when a
service process fails.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from rich.console import Console

from services.logging_setup import configure_logging
from services.settings import Settings, get_settings
from services.store.migrate import upgrade as upgrade_database
from services.worker.process import blas_environment, worker_command
from services.worker.reaper import run_reaper

__all__ = ["app"]

app = typer.Typer()
db_app = typer.Typer(help="Manage steep's database.", no_args_is_help=True)
app.add_typer(db_app, name="db")

logger = logging.getLogger(__name__)
console = Console(soft_wrap=True)
stderr_console = Console(stderr=True, soft_wrap=True)

API_FACTORY = "services.api.app:create_app"
PID_FILE = "serve.pid"
LOG_FILE = "serve.log"
# A worker that has not stopped this long after SIGTERM is killed; its job's lease
# then expires and the reaper requeues the job. The wait is longer when the
# shutdown_wait_seconds setting lets a worker finish its epoch for longer.
WORKER_STOP_SECONDS = 60.0
WORKER_STOP_MARGIN_SECONDS = 30.0
API_START_SECONDS = 30.0
SERVE_STOP_SECONDS = 90.0

HostOption = Annotated[
    str | None, typer.Option(help="Address the API listens on. Default: the host setting.")
]
PortOption = Annotated[
    int | None,
    typer.Option(min=1, max=65535, help="Port the API listens on. Default: the port setting."),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Folder for the SQLite database and broker. Default: ./.steep"),
]


# Settings ---------------------------------------------------------------------------------


def _settings_with(**overrides: Any) -> Settings:
    """Export the given options as STEEP_* variables and return the settings they give."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"STEEP_{name.upper()}"] = str(value)
    get_settings.cache_clear()
    return get_settings()


# steep db upgrade -------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to.")] = "head",
) -> None:
    """Create or upgrade the database schema to the latest revision.

    Exit codes:
    0 upgraded
    1 the database could not be reached, or a migration or the revision failed
    """
    settings = _settings_with()
    configure_logging(settings)
    upgrade_database(settings.resolved_database_url, revision)
    console.print(f"database upgraded to {revision}")


# steep api ------------------------------------------------------------------------------


@app.command()
def api(host: HostOption = None, port: PortOption = None) -> None:
    """Run the HTTP API (uvicorn) in the foreground.

    Exit codes:
    0 stopped by Ctrl-C (SIGINT) or SIGTERM
    3 the API did not start, e.g. the port is in use (uvicorn's startup failure)
    """
    settings = _settings_with(host=host, port=port)
    configure_logging(settings)
    uvicorn.run(
        API_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,
    )


# steep worker ---------------------------------------------------------------------------


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs run at once. Default: the worker_concurrency setting."),
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(help="Celery pool: solo or prefork. Default: solo for 1 job, else prefork."),
    ] = None,
    hostname: Annotated[
        str | None, typer.Option(help="Celery node name. Default: unique per process.")
    ] = None,
) -> None:
    """Run a Celery worker that trains queued jobs, replacing this process.

    The exit code is the Celery worker's. A warm shutdown hands the running job back
    to the queue.

    Exit codes:
    0 stopped warm: SIGTERM, or a first Ctrl-C
    1 it failed, rejected an option, or stopped cold (SIGQUIT, a second Ctrl-C)
    """
    settings = _settings_with()
    command = worker_command(settings, concurrency=concurrency, pool=pool, hostname=hostname)
    # The new process reads these before NumPy loads BLAS, so its pool has this size.
    os.environ.update(blas_environment(settings.blas_threads))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


# steep reaper ---------------------------------------------------------------------------


@app.command()
def reaper() -> None:
    """Requeue jobs of lost workers and resend lost messages, until SIGINT or SIGTERM.

    An error during a pass is logged, and the next pass runs as planned.

    Exit codes:
    0 stopped by Ctrl-C (SIGINT) or SIGTERM
    1 the reaper could not start (a traceback shows the error)
    """
    settings = _settings_with()
    configure_logging(settings)
    stop_event = threading.Event()
    with _stop_on_signals(stop_event):
        run_reaper(settings, stop_event)


@contextmanager
def _stop_on_signals(stop_event: threading.Event) -> Iterator[None]:
    """Set ``stop_event`` on SIGINT and SIGTERM while the block runs."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop_event.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# steep serve ----------------------------------------------------------------------------


@app.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
    data_dir: DataDirOption = None,
    detach: Annotated[
        bool, typer.Option(help="Start in the background, wait until it is ready, and return.")
    ] = False,
    stop: Annotated[
        bool, typer.Option(help="Stop the background service started with --detach.")
    ] = False,
) -> None:
    """Run steep on this machine: the API, one worker and the reaper (SQLite by default).

    Migrates the database first. Stops cleanly on Ctrl-C (SIGINT) or SIGTERM: the
    running job goes back to the queue and resumes at the next start.

    Exit codes:
    0 stopped cleanly; with --detach: ready; with --stop: stopped
    1 a process failed, steep serve already runs, or --detach or --stop failed
    """
    resolved_dir = (data_dir or get_settings().data_dir).resolve()
    settings = _settings_with(host=host, port=port, data_dir=resolved_dir)
    pid_path = settings.data_dir / PID_FILE
    stop_command = "steep serve --stop" + (f" --data-dir {resolved_dir}" if data_dir else "")
    if stop:
        raise typer.Exit(_stop_detached(pid_path))
    running = _live_pid(pid_path)
    if running is not None:
        stderr_console.print(
            f"steep serve is already running (pid {running}); stop it with `{stop_command}` first"
        )
        raise typer.Exit(1)
    if detach:
        raise typer.Exit(_start_detached(settings, stop_command))
    raise typer.Exit(_serve(settings, pid_path))


def _serve(settings: Settings, pid_path: Path) -> int:
    configure_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pid_path.write_text(str(os.getpid()))
    try:
        upgrade_database(settings.resolved_database_url)
        services = _ServiceGroup(settings)
        # Signals only set the stop event, also while the services stop, so that a
        # second Ctrl-C cannot interrupt the worker's shutdown halfway.
        with _stop_on_signals(services.stop_event), services:
            return services.run()
    finally:
        if _live_pid(pid_path) == os.getpid():
            pid_path.unlink()


class _ServiceGroup:
    """The API (a thread running uvicorn), the reaper (a thread) and a worker (a process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        config = uvicorn.Config(
            API_FACTORY,
            factory=True,
            host=settings.host,
            port=settings.port,
            log_config=None,
        )
        self.server = uvicorn.Server(config)
        self.api_thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        self.reaper_thread = threading.Thread(
            target=run_reaper, args=(settings, self.stop_event), name="reaper", daemon=True
        )
        self.worker: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _ServiceGroup:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        self.server.should_exit = True
        if self.api_thread.is_alive():
            self.api_thread.join(10)
        self._stop_worker()
        if self.reaper_thread.is_alive():
            self.reaper_thread.join(10)
        self._say("steep stopped")

    def _say(self, message: str, *, error: bool = False) -> None:
        """Print ``message`` for a person, or log it when the logs are JSON lines."""
        if self.settings.log_json:
            logger.log(logging.ERROR if error else logging.INFO, message)
        elif error:
            stderr_console.print(message)
        else:
            console.print(message)

    def run(self) -> int:
        """Start everything, wait for a stop signal or a failure, and return the exit code."""
        self.worker = _start_worker(self.settings)
        self.reaper_thread.start()
        self.api_thread.start()
        url = self.settings.base_url
        if not self._wait_for_api():
            if self.stop_event.is_set():
                return 0
            self._say(f"the API did not start on {url}; see the log above", error=True)
            return 1
        self._say(f"steep is running at {url} (API docs at {url}/docs)")
        self._say(_auth_mode(self.settings))
        self._say("press Ctrl-C to stop")
        return self._wait_for_stop()

    def _wait_for_api(self) -> bool:
        """Wait until uvicorn serves; False if it failed, timed out or a stop was requested."""
        deadline = time.monotonic() + API_START_SECONDS
        while not self.server.started:
            if not self.api_thread.is_alive() or time.monotonic() > deadline:
                return False
            if self.stop_event.wait(0.05):
                return False
        return True

    def _wait_for_stop(self) -> int:
        while not self.stop_event.wait(0.5):
            assert self.worker is not None
            exit_code = self.worker.poll()
            if exit_code is not None:
                self._say(f"the worker exited with code {exit_code}; stopping steep", error=True)
                return 1
            if not self.api_thread.is_alive():
                self._say("the API stopped; stopping steep", error=True)
                return 1
        self._say("stopping steep: the running job, if any, goes back to the queue")
        return 0

    def _stop_worker(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            return
        stop_seconds = max(
            WORKER_STOP_SECONDS, self.settings.shutdown_wait_seconds + WORKER_STOP_MARGIN_SECONDS
        )
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(stop_seconds)
        except subprocess.TimeoutExpired:
            self._say(
                f"the worker did not stop within {stop_seconds:.0f} s; killing it", error=True
            )
            self.worker.kill()
            self.worker.wait()


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """Start one solo-pool worker in its own session, so a terminal's Ctrl-C skips it.

    ``steep serve`` stops the worker itself, with SIGTERM, after the API.
    """
    os.environ.update(blas_environment(settings.blas_threads))
    command = worker_command(settings, concurrency=1, pool="solo")
    return subprocess.Popen(command, start_new_session=True)


# steep serve --detach and --stop ----------------------------------------------------------


def _start_detached(settings: Settings, stop_command: str) -> int:
    """Start ``steep serve`` in the background with its output in a log file; wait until ready.

    Readiness is checked at the address the API listens on, not at ``public_url``,
    which may name a proxy that is not set up yet.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / LOG_FILE
    command = [
        sys.executable,
        "-c",
        "import sys; from services.cli import main; sys.argv[0] = 'steep'; main()",
        "serve",
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if not _wait_until_healthy(settings.listen_url, process):
        stderr_console.print(f"steep serve did not become ready; its log is {log_path}")
        if process.poll() is None:
            process.terminate()
        return 1
    url = settings.base_url
    console.print(f"steep is running at {url} (API docs at {url}/docs), pid {process.pid}")
    console.print(_auth_mode(settings))
    console.print(f"log: {log_path}; stop it with `{stop_command}`")
    return 0


def _auth_mode(settings: Settings) -> str:
    if not settings.keys_required:
        return "no API key needed on loopback: requests without one act as the tenant 'local'"
    where = f" --data-dir {settings.data_dir}" if settings.is_embedded else ""
    return f"API keys required: create one with `steep keys create --tenant NAME{where}`"


def _wait_until_healthy(listen_url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + API_START_SECONDS + 30.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(f"{listen_url}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _stop_detached(pid_path: Path) -> int:
    pid = _live_pid(pid_path)
    if pid is None:
        stderr_console.print(f"no running steep serve found (no live pid in {pid_path})")
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + SERVE_STOP_SECONDS
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            stderr_console.print(
                f"steep serve (pid {pid}) did not stop within {SERVE_STOP_SECONDS:.0f} s"
            )
            return 1
        time.sleep(0.2)
    console.print(f"steep serve (pid {pid}) stopped")
    return 0


def _live_pid(pid_path: Path) -> int | None:
    """Return the pid in ``pid_path`` if that process is alive, else None."""
    try:
        pid = int(pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, but owned by another user
    return True
