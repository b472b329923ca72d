"""Time what the service adds to training: the worker's database writes, dispatch and polling.

One run measures each mode asked for with ``--modes``: embedded (SQLite database
and SQLite broker files in a temporary folder) and distributed (PostgreSQL and
Redis). Distributed mode uses --database-url and --broker-url when given.
Without --database-url the script creates a fresh PostgreSQL database
``steep_bench_<random>`` on 127.0.0.1:5432 (user postgres) and drops it at the
end. Without --broker-url it uses Redis database 13 on 127.0.0.1:6379. In each mode:

1. Worker overhead: the same spec trained by ``core.fit`` in this process and by
   ``run_job`` (claim, dataset load, buffered history flushes, checkpoints, weights
   and final status). The job is submitted before run_job's clock starts, because
   submitting is the API's work. The two alternate, ``--repeat`` runs each, and the
   ratio is run_job's best time over core.fit's. The long digits job (``--epochs``)
   shows the per-epoch cost, because the fixed costs (claim, dataset load, final
   write) weigh less there.
2. Submit-to-running latency: ``--jobs`` one-epoch jobs posted one at a time to a
   ``steep api`` subprocess and run by one ``steep worker`` (solo pool). Each job
   is submitted only after the previous one has finished, so the queue is empty
   and the worker idle. The latency is the job's ``running`` transition time minus
   its ``queued`` transition time, both written by the service.
3. Burst throughput: ``--jobs`` one-epoch jobs submitted at once through
   ``services.jobs.create_job`` to the same worker. It reports the time from the
   first submission to the last success, which includes broker polling.
4. Polling: ``GET /v1/jobs/{id}`` sent to the ``steep api`` subprocess (uvicorn, one
   process) while the worker trains a long job that writes history, in two runs with
   ``--pollers`` pollers, each an ``httpx.AsyncClient`` of its own with a kept-alive
   connection (all in this process):

   - paced (the goal's measurement): each poller sends a GET every
     ``--poll-interval`` seconds (default 0.5 s, the interval of steep's own client)
     from a random phase, for ``--poll-seconds``. The schedule is open-loop: a request
     is sent at its time even when the poller's previous response has not arrived, so
     the offered load stays ``pollers / interval`` requests/s however slow the API is.
     It reports the latency percentiles, the offered and achieved rates, failed
     requests, and how late this process sent requests against the schedule. A
     latency runs from the call of ``client.get`` to the end of the response body, so
     it also includes this process's own delays, but not a late send.
   - saturation: the same pollers send ``--saturation-requests`` GETs in all, each the
     moment its previous one returns. This measures the API's maximum throughput;
     its latencies are mostly time spent queueing behind the other pollers.

   Both runs report the CPU time per request of the API process (from /proc, Linux
   only) and of this process. Where the API requires API keys (distributed mode), the
   script creates a key and every client sends it.

Run from the repository root::

    python3 benchmarks/service.py
    python3 benchmarks/service.py --modes embedded,distributed --json
    python3 benchmarks/service.py --modes distributed \\
        --database-url postgresql+psycopg://postgres@127.0.0.1/bench \\
        --broker-url redis://127.0.0.1:6379/14

A PostgreSQL database given with --database-url is migrated and gets benchmark
jobs written to it, so give an empty one. This is a benchmark, not a test: it
prints numbers and checks only that the jobs succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# Running the file directly puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np

import core
from services.jobs import create_job
from services.keys import create_key
from services.settings import Settings, get_settings
from services.store.db import dispose_engine, session_scope
from services.store.migrate import upgrade
from services.store.models import Job
from services.worker.celery_app import celery_app
from services.worker.enqueue import enqueue_job
from services.worker.process import blas_environment
from services.worker.runner import run_job

TENANT = "local"

TEA_SPEC: dict[str, Any] = {
    "dataset": "builtin:tea",
    "model": {
        "layers": [
            {"type": "dense", "units": 1, "bias": False, "init": {"type": "constant", "value": 0.5}}
        ]
    },
    "loss": {"type": "squared_error", "reduction": "sum"},
    "optimizer": {"type": "sgd", "lr": 0.01},
    "training": {"epochs": 1, "batch_size": 1, "shuffle": False, "dtype": "float64"},
}

DIGITS_SPEC: dict[str, Any] = {
    "dataset": "builtin:digits",
    "model": {
        "layers": [
            {"type": "dense", "units": 64, "activation": "relu"},
            {"type": "dense", "units": 10},
        ]
    },
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.002},
    "training": {"epochs": 30, "batch_size": 32, "seed": 0, "validation_split": 0.2},
    "preprocessing": {"standardize": True},
}


def export_settings(settings: Settings) -> None:
    """Make ``settings`` the settings of this process and of the worker it starts."""
    for name in ("data_dir", "database_url", "broker_url", "checkpoint_interval_seconds"):
        value = getattr(settings, name)
        if value is not None:
            os.environ[f"STEEP_{name.upper()}"] = str(value)
    get_settings.cache_clear()
    celery_app.cache_clear()


def submit(settings: Settings, spec: dict[str, Any], enqueue: Callable[[str], bool]) -> str:
    detail, _ = create_job(settings, TENANT, core.parse_spec(spec), enqueue)
    return detail.id


def status_of(settings: Settings, job_id: str) -> str:
    with session_scope(settings.resolved_database_url, write=False) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.status


def measure_overhead(
    label: str, spec: dict[str, Any], settings: Settings, repeat: int
) -> dict[str, Any]:
    """Time core.fit and run_job on ``spec``; return the best of each and their ratio.

    The two alternate, so that a change in the machine's speed during the runs
    (another virtual machine on the host, say) reaches both alike.
    """
    data = core.load_builtin(spec["dataset"])

    def fit_in_process() -> float:
        started = time.perf_counter()
        core.fit(spec, data.x, data.y, classes=data.classes)
        return time.perf_counter() - started

    def run_through_service() -> float:
        # Submitting is the API's work, not the worker's, so it is not timed.
        job_id = submit(settings, spec, lambda _: True)
        started = time.perf_counter()
        outcome = run_job(job_id, worker_id="benchmark", settings=settings)
        seconds = time.perf_counter() - started
        assert outcome == "succeeded", f"job {job_id} ended {outcome}"
        return seconds

    fit_runs, service_runs = [], []
    for _ in range(repeat):
        fit_runs.append(fit_in_process())
        service_runs.append(run_through_service())
    fit_seconds, service_seconds = min(fit_runs), min(service_runs)
    return {
        "workload": label,
        "core_fit_seconds": fit_seconds,
        "run_job_seconds": service_seconds,
        "ratio": service_seconds / fit_seconds,
    }


def wait_until_done(settings: Settings, job_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(job_ids)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} jobs did not finish within {timeout:.0f} s")
        statuses = {job_id: status_of(settings, job_id) for job_id in pending}
        failed = [job_id for job_id, status in statuses.items() if status != "succeeded"]
        if any(status in ("failed", "cancelled") for status in statuses.values()):
            raise RuntimeError(f"jobs did not succeed: {statuses}")
        pending = failed
        time.sleep(0.02)


# Goals the report prints beside the numbers.
GOAL_OVERHEAD_RATIO = 1.05
GOAL_REDIS_SUBMIT_P50_MS = 50.0
GOAL_POLL_P99_MS = 20.0

# steep's own client polls every 0.5 s (services.client.Client.wait), and so does
# `steep submit --wait`.
CLIENT_POLL_SECONDS = 0.5
POLL_TIMEOUT_SECONDS = 30.0

STEEP_COMMAND = [
    sys.executable,
    "-c",
    "import sys; from services.cli import main; sys.argv[0] = 'steep'; main()",
]
PORTS = {"embedded": 18731, "distributed": 18732}
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_BROKER_URL = "redis://127.0.0.1:6379/13"
START_SECONDS = 60.0
ENGINE_BENCHMARK_WAIT_SECONDS = 600.0
ENGINE_BENCHMARK_CHECK_SECONDS = 15.0


def wait_for_engine_benchmark() -> float:
    """Wait until no ``benchmarks/engine.py`` process runs, so that it does not share the CPUs.

    Checks every 15 s for up to 10 minutes and returns the seconds waited.
    """
    started = time.monotonic()
    while True:
        found = subprocess.run(
            ["pgrep", "-f", "benchmarks/engine.py"], capture_output=True, check=False
        )
        if found.returncode != 0:
            return time.monotonic() - started
        if time.monotonic() - started > ENGINE_BENCHMARK_WAIT_SECONDS:
            print(
                "benchmarks/engine.py still runs after 10 minutes; measuring anyway",
                file=sys.stderr,
            )
            return time.monotonic() - started
        print("waiting for benchmarks/engine.py to finish ...", file=sys.stderr)
        time.sleep(ENGINE_BENCHMARK_CHECK_SECONDS)


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000.0
    return {
        "n": len(values),
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }


def transition_time(detail: dict[str, Any], status: str) -> datetime:
    """Return when the job first entered ``status``, from its transitions."""
    for transition in detail["transitions"]:
        if transition["status"] == status:
            return datetime.fromisoformat(transition["at"])
    raise KeyError(f"job {detail['id']} has no {status!r} transition: {detail['transitions']}")


# Service processes ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningService:
    base_url: str
    api_pid: int
    # The Authorization header where the API needs a key (distributed mode), else empty.
    headers: dict[str, str]


@contextmanager
def service_processes(settings: Settings, port: int, log_dir: Path) -> Iterator[RunningService]:
    """Run ``steep api`` on 127.0.0.1:``port`` and one solo ``steep worker``; yield the
    API's base URL and process id. Their output goes to log files in ``log_dir``."""
    base_url = f"http://127.0.0.1:{port}"
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name, arguments in (
            ("api", ["api", "--host", "127.0.0.1", "--port", str(port)]),
            ("worker", ["worker", "--concurrency", "1", "--pool", "solo"]),
        ):
            with (log_dir / f"{name}-{port}.log").open("ab") as log:
                started.append(
                    subprocess.Popen(
                        STEEP_COMMAND + arguments,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        wait_until_healthy(base_url, started, log_dir)
        yield RunningService(base_url, api_pid=started[0].pid, headers=api_headers(settings))
    finally:
        api_log = log_dir / f"api-{port}.log"
        errors_logged = [
            line for line in api_log.read_text(errors="replace").splitlines() if "ERROR" in line
        ]
        if errors_logged:
            print(f"steep api logged {len(errors_logged)} errors, the last:", file=sys.stderr)
            print("\n".join(errors_logged[-5:]), file=sys.stderr)
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def api_headers(settings: Settings) -> dict[str, str]:
    """Return the headers a client of ``settings``' API sends: a new key of the benchmark's
    tenant where the API requires keys, no headers where it does not."""
    if not settings.keys_required:
        return {}
    secret = create_key(settings, TENANT, name="benchmarks/service.py").secret
    return {"Authorization": f"Bearer {secret}"}


def wait_until_healthy(
    base_url: str, processes: list[subprocess.Popen[bytes]], log_dir: Path
) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            # The logs are in a temporary folder that is deleted on the way out.
            raise RuntimeError(
                f"steep api or worker exited at start; the end of their logs:\n{tail_logs(log_dir)}"
            )
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(
        f"steep api did not respond on {base_url}/healthz within {START_SECONDS:.0f} s"
    )


def tail_logs(log_dir: Path, lines: int = 10) -> str:
    """Return the last ``lines`` lines of each log file in ``log_dir``, under its name."""
    parts = []
    for path in sorted(log_dir.glob("*.log")):
        last = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append("\n".join([f"--- {path.name}", *last]))
    return "\n".join(parts)


def post_job(client: httpx.Client, spec: dict[str, Any]) -> str:
    response = client.post("/v1/jobs", json=spec)
    response.raise_for_status()
    job_id: str = response.json()["id"]
    return job_id


def wait_for_status(
    client: httpx.Client, job_id: str, statuses: set[str], timeout: float, interval: float = 0.01
) -> dict[str, Any]:
    """Poll the job until its status is one of ``statuses``; return the job detail."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        detail: dict[str, Any] = response.json()
        if detail["status"] in statuses:
            return detail
        if detail["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"job {job_id} ended {detail['status']}: {detail.get('error')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is still {detail['status']} after {timeout:.0f} s")
        time.sleep(interval)


# Measurements through the service processes --------------------------------------------------


def measure_submit_to_running(client: httpx.Client, n_jobs: int) -> dict[str, Any]:
    """Post ``n_jobs`` one-epoch jobs one at a time, each after the previous one succeeded;
    return the percentiles of running.at - queued.at."""
    latencies = []
    for _ in range(n_jobs):
        job_id = post_job(client, TEA_SPEC)
        detail = wait_for_status(client, job_id, {"succeeded"}, timeout=60)
        queued_at = transition_time(detail, "queued")
        running_at = transition_time(detail, "running")
        latencies.append((running_at - queued_at).total_seconds())
    return percentiles_ms(latencies)


def measure_burst(settings: Settings, n_jobs: int) -> dict[str, Any]:
    """Submit ``n_jobs`` one-epoch jobs at once through ``create_job``; return seconds per job."""
    started = time.perf_counter()
    job_ids = [submit(settings, TEA_SPEC, enqueue_job) for _ in range(n_jobs)]
    wait_until_done(settings, job_ids, timeout=60 + 5 * n_jobs)
    elapsed = time.perf_counter() - started
    return {"jobs": n_jobs, "seconds": elapsed, "seconds_per_job": elapsed / n_jobs}


def long_digits_spec(epochs: int) -> dict[str, Any]:
    spec = copy.deepcopy(DIGITS_SPEC)
    spec["training"]["epochs"] = epochs
    return spec


# Polling ------------------------------------------------------------------------------


@dataclass
class PollRun:
    """The outcome of one polling run: the latency of each successful request, failures by
    kind, and the timing and CPU time of the run."""

    latencies: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    wall_seconds: float = 0.0
    api_cpu_seconds: float | None = None
    client_cpu_seconds: float = 0.0


def process_cpu_seconds(pid: int) -> float | None:
    """Return the user plus system CPU seconds of process ``pid`` from /proc, or None where
    /proc is not available (not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def get_job(client: httpx.AsyncClient, job_id: str, run: PollRun) -> None:
    """Send one GET of the job; record its latency, or its failure in ``run.errors``."""
    run.sent += 1
    started = time.perf_counter()
    try:
        response = await client.get(f"/v1/jobs/{job_id}")
    except httpx.HTTPError as error:
        run.errors[type(error).__name__] += 1
        return
    if response.status_code != 200:
        run.errors[f"HTTP {response.status_code}"] += 1
        return
    run.latencies.append(time.perf_counter() - started)


async def open_clients(
    service: RunningService, job_id: str, pollers: int
) -> list[httpx.AsyncClient]:
    """Open one AsyncClient per poller, as separate polling programs would, and send one
    unmeasured GET on each so that its connection is open before the clock starts."""
    clients = [
        httpx.AsyncClient(
            base_url=service.base_url, headers=service.headers, timeout=POLL_TIMEOUT_SECONDS
        )
        for _ in range(pollers)
    ]
    try:
        for client in clients:
            (await client.get(f"/v1/jobs/{job_id}")).raise_for_status()
    except BaseException:
        await asyncio.gather(*(client.aclose() for client in clients))
        raise
    return clients


@contextmanager
def cpu_accounting(run: PollRun, service: RunningService) -> Iterator[None]:
    """Record in ``run`` the CPU seconds that this process and the API process use in the block.

    The API's share stays None where ``/proc`` cannot be read.
    """
    api_before = process_cpu_seconds(service.api_pid)
    client_before = time.process_time()
    yield
    run.client_cpu_seconds = time.process_time() - client_before
    api_after = process_cpu_seconds(service.api_pid)
    if api_before is not None and api_after is not None:
        run.api_cpu_seconds = api_after - api_before


async def poll_on_schedule(
    service: RunningService, job_id: str, pollers: int, interval: float, seconds: float
) -> PollRun:
    """Poll the job open-loop: each poller sends a GET every ``interval`` seconds from a
    random phase, for ``seconds``.

    Every request is sent at its scheduled time in a task of its own, whether or not the
    poller's previous response has arrived, so slow responses do not lower the offered
    load. ``send_lags`` records how late each request left against its schedule, which
    shows whether this process kept up.
    """
    run = PollRun()
    clients = await open_clients(service, job_id, pollers)
    loop = asyncio.get_running_loop()
    random = np.random.default_rng(0)
    in_flight: set[asyncio.Task[None]] = set()

    async def poller(client: httpx.AsyncClient, start: float, phase: float) -> None:
        scheduled = start + phase
        while scheduled < start + seconds:
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            run.send_lags.append(loop.time() - scheduled)
            task = asyncio.create_task(get_job(client, job_id, run))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            scheduled += interval

    try:
        with cpu_accounting(run, service):
            start = loop.time()
            phases = random.uniform(0.0, interval, size=pollers)
            await asyncio.gather(
                *(
                    poller(client, start, float(phase))
                    for client, phase in zip(clients, phases, strict=True)
                )
            )
            await asyncio.gather(*in_flight)
            run.wall_seconds = loop.time() - start
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return run


async def poll_back_to_back(
    service: RunningService, job_id: str, pollers: int, total_requests: int
) -> PollRun:
    """Poll the job closed-loop: each poller sends its next GET as soon as the previous one
    returns, ``total_requests`` in all. This measures the API's throughput at saturation;
    the latencies are queueing behind the other pollers, not the latency of a paced poller."""
    run = PollRun()
    clients = await open_clients(service, job_id, pollers)
    remaining = total_requests

    async def poller(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await get_job(client, job_id, run)

    try:
        with cpu_accounting(run, service):
            started = time.perf_counter()
            await asyncio.gather(*(poller(client) for client in clients))
            run.wall_seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return run


def summarize_poll_run(run: PollRun) -> dict[str, Any]:
    """Return the percentiles, rates, failures and CPU cost of one polling run."""
    answered = len(run.latencies)
    summary: dict[str, Any] = {
        **(percentiles_ms(run.latencies) if answered else {"n": 0}),
        "sent": run.sent,
        "failed_requests": dict(run.errors),
        "seconds": run.wall_seconds,
        "achieved_requests_per_second": answered / run.wall_seconds,
        "api_cpu_ms_per_request": None,
        "client_cpu_ms_per_request": 1000.0 * run.client_cpu_seconds / max(run.sent, 1),
    }
    if run.api_cpu_seconds is not None and answered:
        summary["api_cpu_ms_per_request"] = 1000.0 * run.api_cpu_seconds / answered
    return summary


def measure_polling(
    client: httpx.Client, service: RunningService, args: argparse.Namespace
) -> dict[str, Any]:
    """Poll a job while the worker trains it: first paced pollers on a schedule, then the
    same number of pollers back to back for the saturation throughput."""
    # Long enough to train during both runs; it is cancelled afterwards.
    job_id = post_job(client, long_digits_spec(100_000))
    wait_for_status(client, job_id, {"running"}, timeout=60)
    progress_before = client.get(f"/v1/jobs/{job_id}").json()["progress"]

    load_before_paced = os.getloadavg()[0]
    paced = asyncio.run(
        poll_on_schedule(service, job_id, args.pollers, args.poll_interval, args.poll_seconds)
    )
    paced_summary = summarize_poll_run(paced)
    paced_summary["offered_requests_per_second"] = args.pollers / args.poll_interval
    paced_summary["send_lag_p99_ms"] = float(np.percentile(paced.send_lags, 99) * 1000.0)
    paced_summary["load_before"] = load_before_paced
    paced_summary["load_after"] = load_before_saturated = os.getloadavg()[0]
    progress_between = client.get(f"/v1/jobs/{job_id}").json()["progress"]

    saturated = asyncio.run(
        poll_back_to_back(service, job_id, args.pollers, args.saturation_requests)
    )
    saturation_summary = summarize_poll_run(saturated)
    saturation_summary["load_before"] = load_before_saturated
    saturation_summary["load_after"] = os.getloadavg()[0]
    after = client.get(f"/v1/jobs/{job_id}").json()
    still_running = after["status"] == "running"
    client.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
    wait_for_status(client, job_id, {"cancelled"}, timeout=60)
    return {
        "pollers": args.pollers,
        "api_key_sent": bool(service.headers),
        "job_ran_throughout": still_running,
        "epochs_trained_while_paced": progress_between["epoch"] - progress_before["epoch"],
        "epochs_trained_while_saturated": after["progress"]["epoch"] - progress_between["epoch"],
        "paced": {"interval_seconds": args.poll_interval, **paced_summary},
        "saturation": saturation_summary,
    }


# Modes ------------------------------------------------------------------------------------


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create an empty PostgreSQL database on 127.0.0.1 and drop it afterwards; yield its URL."""
    import psycopg

    name = f"steep_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        dispose_engine()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure_mode(
    mode: str, database_url: str | None, broker_url: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    """Run every measurement against one database and broker."""
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder), database_url=database_url, broker_url=broker_url)
        export_settings(settings)
        os.environ.update(blas_environment(settings.blas_threads))
        upgrade(settings.resolved_database_url)
        every_epoch = settings.model_copy(update={"checkpoint_interval_seconds": 0.0})
        overhead = [
            measure_overhead("tea, 1 epoch", TEA_SPEC, settings, args.repeat),
            measure_overhead("digits, 30 epochs", DIGITS_SPEC, settings, args.repeat),
            measure_overhead(
                "digits, 30 epochs, checkpoint every epoch", DIGITS_SPEC, every_epoch, args.repeat
            ),
            measure_overhead(
                f"digits, {args.epochs} epochs",
                long_digits_spec(args.epochs),
                settings,
                args.repeat,
            ),
        ]
        with (
            service_processes(settings, PORTS[mode], Path(folder)) as service,
            httpx.Client(
                base_url=service.base_url, headers=service.headers, timeout=30.0
            ) as client,
        ):
            # Warm up: the first job waits for the worker to connect to the broker.
            wait_for_status(client, post_job(client, TEA_SPEC), {"succeeded"}, timeout=120)
            submit_to_running = measure_submit_to_running(client, args.jobs)
            burst = measure_burst(settings, args.jobs)
            polling = measure_polling(client, service, args)
        dispose_engine()
    return {
        "mode": mode,
        "database": "sqlite" if settings.is_embedded else "postgresql",
        "broker": settings.resolved_broker_url.split(":", 1)[0],
        "overhead": overhead,
        "submit_to_running": submit_to_running,
        "burst": burst,
        "polling": polling,
    }


def run_modes(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for mode in args.modes:
        if mode == "embedded":
            results.append(measure_mode(mode, None, None, args))
        elif args.database_url:
            broker_url = args.broker_url or REDIS_BROKER_URL
            results.append(measure_mode(mode, args.database_url, broker_url, args))
        else:
            with fresh_postgres_database() as database_url:
                broker_url = args.broker_url or REDIS_BROKER_URL
                results.append(measure_mode(mode, database_url, broker_url, args))
    return results


# Command line and report ------------------------------------------------------------------


def parse_modes(value: str) -> list[str]:
    modes = [mode.strip() for mode in value.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in PORTS]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f"invalid modes {value!r}: give embedded, distributed or both, comma-separated"
        )
    return modes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--modes",
        type=parse_modes,
        help="comma-separated: embedded, distributed (default: embedded, plus distributed "
        "when --database-url or --broker-url is given)",
    )
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL for distributed mode; default: a fresh steep_bench_* PostgreSQL "
        "database on 127.0.0.1:5432, dropped afterwards",
    )
    parser.add_argument(
        "--broker-url", help=f"Celery broker URL for distributed mode; default: {REDIS_BROKER_URL}"
    )

    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the best counts")
    parser.add_argument(
        "--epochs", type=int, default=200, help="epochs of the long digits overhead workload"
    )
    parser.add_argument(
        "--jobs", type=int, default=50, help="jobs in the submit-to-running and burst measurements"
    )
    parser.add_argument(
        "--pollers", type=int, default=50, help="concurrent GET /v1/jobs/{id} clients"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=CLIENT_POLL_SECONDS,
        help="seconds between one poller's requests in the paced run (default: the 0.5 s "
        "of steep's client)",
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=30.0, help="duration of the paced run, in seconds"
    )
    parser.add_argument(
        "--saturation-requests",
        type=int,
        default=5000,
        help="GET requests sent by all pollers in all in the back-to-back run",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="measure even while benchmarks/engine.py runs"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")

    args = parser.parse_args(argv)
    if args.pollers < 1 or args.saturation_requests < 1:
        parser.error("--pollers and --saturation-requests must be at least 1")
    if args.poll_interval <= 0 or args.poll_seconds <= 0:
        parser.error("--poll-interval and --poll-seconds must be positive")
    if args.modes is None:
        distributed = args.database_url or args.broker_url
        args.modes = ["embedded", "distributed"] if distributed else ["embedded"]
    return args


def print_report(report: dict[str, Any]) -> None:
    print(
        f"python {report['python']}, {report['n_cpus']} CPUs, load average before "
        f"{report['load_before']:.2f}, after {report['load_after']:.2f}"
    )
    print(
        "The pollers, the API and the worker run on this machine and share its "
        f"{report['n_cpus']} CPUs; the latencies include that contention."
    )
    for result in report["modes"]:
        print()
        print(f"== {result['mode']}: database {result['database']}, broker {result['broker']}")
        print(f"{'workload':<45}{'core.fit s':>12}{'run_job s':>12}{'ratio':>8}  goal <= 1.05")
        for row in result["overhead"]:
            print(
                f"{row['workload']:<45}{row['core_fit_seconds']:>12.4f}"
                f"{row['run_job_seconds']:>12.4f}{row['ratio']:>8.3f}"
            )
        dispatch = result["submit_to_running"]
        dispatch_goal = (
            f"goal p50 <= {GOAL_REDIS_SUBMIT_P50_MS:.0f} ms"
            if result["broker"] == "redis"
            else "no goal for this broker"
        )
        print(
            f"submit-to-running ({dispatch['n']} jobs, idle worker): p50 "
            f"{dispatch['p50_ms']:.1f} ms, p99 {dispatch['p99_ms']:.1f} ms, "
            f"max {dispatch['max_ms']:.1f} ms  ({dispatch_goal})"
        )
        burst = result["burst"]
        print(
            f"burst: {burst['jobs']} one-epoch jobs through one worker in "
            f"{burst['seconds']:.2f} s, {burst['seconds_per_job'] * 1000:.0f} ms per job"
        )
        print_polling(result["polling"])


def print_polling(polling: dict[str, Any]) -> None:
    paced = polling["paced"]
    saturation = polling["saturation"]
    print(
        f"GET /v1/jobs/{{id}} while the job trains (ran throughout: "
        f"{'yes' if polling['job_ran_throughout'] else 'no'}):"
    )
    print(
        f"  paced: {polling['pollers']} pollers, each every {paced['interval_seconds']} s for "
        f"{paced['seconds']:.0f} s: offered {paced['offered_requests_per_second']:.0f} "
        f"requests/s, achieved {paced['achieved_requests_per_second']:.0f}; latency "
        f"{format_percentiles(paced)}  (goal p99 <= {GOAL_POLL_P99_MS:.0f} ms); load average "
        f"{paced['load_before']:.2f} to {paced['load_after']:.2f}"
    )
    print(f"    send lag against the schedule, p99: {paced['send_lag_p99_ms']:.1f} ms")
    print(
        f"  saturation: {polling['pollers']} pollers back to back, {saturation['sent']} "
        f"requests: {saturation['achieved_requests_per_second']:.0f} requests/s; latency "
        f"{format_percentiles(saturation)} (queueing, no goal); load average "
        f"{saturation['load_before']:.2f} to {saturation['load_after']:.2f}"
    )
    for name, run in (("paced", paced), ("saturation", saturation)):
        api_cpu = run["api_cpu_ms_per_request"]
        api_text = "unknown" if api_cpu is None else f"{api_cpu:.2f} ms"
        print(
            f"  {name}: CPU per request: API process {api_text}, "
            f"pollers {run['client_cpu_ms_per_request']:.2f} ms"
        )
        if run["failed_requests"]:
            print(f"  {name}: failed requests (not in the percentiles): {run['failed_requests']}")


def format_percentiles(run: dict[str, Any]) -> str:
    if run["n"] == 0:
        return "no answered requests"
    return (
        f"p50 {run['p50_ms']:.1f} ms, p95 {run['p95_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, "
        f"max {run['max_ms']:.1f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    waited = 0.0 if args.no_wait else wait_for_engine_benchmark()
    load_before = os.getloadavg()[0]
    results = run_modes(args)
    report = {
        "python": platform.python_version(),
        "n_cpus": os.cpu_count(),
        "cpu_note": "the pollers, the API and the worker share this machine's CPUs",
        "waited_for_engine_benchmark_seconds": waited,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "goals": {
            "overhead_ratio_max": GOAL_OVERHEAD_RATIO,
            "redis_submit_to_running_p50_ms_max": GOAL_REDIS_SUBMIT_P50_MS,
            "poll_p99_ms_max": GOAL_POLL_P99_MS,
        },
        "modes": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
