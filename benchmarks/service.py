"""Time what the service adds to training: the worker's database writes, dispatch and polling.

One run measures each mode asked for with ``--modes``: embedded (SQLite database
and SQLite broker files in a temporary folder) and distributed (PostgreSQL and
Redis). Distributed mode uses --database-url and --broker-url when given.
Without --database-url the script creates a fresh PostgreSQL database
``steep_bench_<random>`` on 127.0.0.1:5432 (user postgres) and drops it at the
end. Without --broker-url it uses Redis database 13 on 127.0.0.1:6379. In each mode:

1. Worker overhead: the same spec trained by ``core.fit`` in this process and by
   ``run_job`` (claim, dataset load, buffered history flushes, checkpoints, weights
   and final status). The ratio is run_job's time over core.fit's, best of
   ``--repeat`` runs. The long digits job (``--epochs``) shows the per-epoch cost,
   because the fixed costs (claim, dataset load, final write) weigh less there.
2. Submit-to-running latency: ``--jobs`` one-epoch jobs posted one at a time to a
   ``steep api`` subprocess and run by one ``steep worker`` (solo pool). Each job
   is submitted only after the previous one has finished, so the queue is empty
   and the worker idle. The latency is the job's ``running`` transition time minus
   its ``queued`` transition time, both written by the service.
3. Burst throughput: ``--jobs`` one-epoch jobs submitted at once through
   ``services.jobs.create_job`` to the same worker. It reports the time from the
   first submission to the last success, which includes broker polling.
4. Poll latency: ``--pollers`` concurrent httpx clients (one asyncio
   AsyncClient with a pool of that many connections) send ``--poll-requests``
   ``GET /v1/jobs/{id}`` requests in all to the ``steep api`` subprocess (uvicorn
   defaults, one process) while the worker trains a long job that writes history.

The pollers, the API and the worker run on the same machine and share its CPUs,
so on a small machine the poll numbers include that contention.

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
from datetime import datetime
from pathlib import Path
from typing import Any

# Running the file directly puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np

import core
from services.jobs import create_job
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


def best_seconds(run: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def measure_overhead(
    label: str, spec: dict[str, Any], settings: Settings, repeat: int
) -> dict[str, Any]:
    """Time core.fit and run_job on ``spec``; return both and their ratio."""
    data = core.load_builtin(spec["dataset"])

    def fit_in_process() -> None:
        core.fit(spec, data.x, data.y, classes=data.classes)

    def run_through_service() -> None:
        job_id = submit(settings, spec, lambda _: True)
        outcome = run_job(job_id, worker_id="benchmark", settings=settings)
        assert outcome == "succeeded", f"job {job_id} ended {outcome}"

    fit_seconds = best_seconds(fit_in_process, repeat)
    service_seconds = best_seconds(run_through_service, repeat)
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


@contextmanager
def service_processes(settings: Settings, port: int, log_dir: Path) -> Iterator[str]:
    """Run ``steep api`` on 127.0.0.1:``port`` and one solo ``steep worker``; yield the
    API's base URL. Their output goes to log files in ``log_dir``."""
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
        yield base_url
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


def wait_until_healthy(
    base_url: str, processes: list[subprocess.Popen[bytes]], log_dir: Path
) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise RuntimeError(f"steep api or worker exited at start; see the logs in {log_dir}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(
        f"steep api did not respond on {base_url}/healthz within {START_SECONDS:.0f} s"
    )


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


async def poll_concurrently(
    base_url: str, job_id: str, pollers: int, total_requests: int
) -> tuple[list[float], dict[str, int], float]:
    """Send ``total_requests`` GETs of one job from ``pollers`` concurrent tasks sharing one
    AsyncClient. Return the seconds of each answered request, the count of failed requests
    by error, and the wall time of all of them."""
    limits = httpx.Limits(max_connections=pollers, max_keepalive_connections=pollers)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    remaining = total_requests

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:

        async def poll() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    response = await client.get(f"/v1/jobs/{job_id}")
                except httpx.HTTPError as error:
                    errors[type(error).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors[f"HTTP {response.status_code}"] += 1

        wall_started = time.perf_counter()
        await asyncio.gather(*(poll() for _ in range(pollers)))
        wall_seconds = time.perf_counter() - wall_started
    return latencies, dict(errors), wall_seconds


def measure_polling(
    client: httpx.Client, base_url: str, pollers: int, total_requests: int
) -> dict[str, Any]:
    """Poll a job with ``pollers`` concurrent clients while the worker trains it."""
    # Long enough to train during the whole poll; it is cancelled afterwards.
    job_id = post_job(client, long_digits_spec(100_000))
    wait_for_status(client, job_id, {"running"}, timeout=60)
    epochs_before = client.get(f"/v1/jobs/{job_id}").json()["progress"]
    latencies, errors, wall_seconds = asyncio.run(
        poll_concurrently(base_url, job_id, pollers, total_requests)
    )
    after = client.get(f"/v1/jobs/{job_id}").json()
    still_running = after["status"] == "running"
    client.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
    wait_for_status(client, job_id, {"cancelled"}, timeout=60)
    return {
        **percentiles_ms(latencies),
        "pollers": pollers,
        "requests_per_second": len(latencies) / wall_seconds,
        "failed_requests": errors,
        "job_ran_throughout": still_running,
        "progress_before": epochs_before,
        "progress_after": after["progress"],
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
            service_processes(settings, PORTS[mode], Path(folder)) as base_url,
            httpx.Client(base_url=base_url, timeout=30.0) as client,
        ):
            # Warm up: the first job waits for the worker to connect to the broker.
            wait_for_status(client, post_job(client, TEA_SPEC), {"succeeded"}, timeout=120)
            submit_to_running = measure_submit_to_running(client, args.jobs)
            burst = measure_burst(settings, args.jobs)
            polling = measure_polling(client, base_url, args.pollers, args.poll_requests)
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
    parser.add_argument("--pollers", type=int, default=50, help="concurrent GET /v1/jobs clients")
    parser.add_argument(
        "--poll-requests", type=int, default=5000, help="GET requests sent by all pollers in all"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="measure even while benchmarks/engine.py runs"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")

    args = parser.parse_args(argv)
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
        polling = result["polling"]
        print(
            f"GET /v1/jobs/{{id}}, {polling['pollers']} pollers, {polling['n']} requests, "
            f"job training: p50 {polling['p50_ms']:.1f} ms, p99 {polling['p99_ms']:.1f} ms, "
            f"{polling['requests_per_second']:.0f} requests/s  "
            f"(goal p99 <= {GOAL_POLL_P99_MS:.0f} ms; job ran throughout: "
            f"{'yes' if polling['job_ran_throughout'] else 'no'})"
        )
        if polling["failed_requests"]:
            print(f"  failed poll requests (not in the percentiles): {polling['failed_requests']}")


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
