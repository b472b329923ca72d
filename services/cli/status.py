"""``steep status``: the operator's view of a deployment, read from its database.

It reads the database named by the ``STEEP_*`` settings directly, like
``steep db upgrade``, so it needs no API key and shows every tenant's jobs. Run it on a
machine of the deployment, as its operator.

Exit codes: 0 printed, 3 the database could not be read.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.database import DataDirOption, database_errors, operator_settings
from services.cli.output import table_console
from services.cli.remote import JsonOption, print_json
from services.store import overview, workers
from services.store.db import session_scope
from services.store.models import utcnow

__all__ = ["app", "read_status"]

app = typer.Typer()
console = table_console(soft_wrap=True)
stderr_console = Console(stderr=True, soft_wrap=True)

EXIT_UNREACHABLE = 3


def read_status(database_url: str) -> dict[str, Any]:
    """Return the workers alive, queue depth, running jobs and job counts, as JSON values."""
    with session_scope(database_url, write=False) as session:
        alive = workers.alive_workers(session)
        by_status = overview.count_jobs_by_status(session)
        running = overview.running_jobs(session)
    return {
        "workers_alive": [
            {
                "id": worker.id,
                "hostname": worker.hostname,
                "pid": worker.pid,
                "job_id": worker.job_id,
                "started_at": worker.started_at.isoformat(),
                "last_seen_at": worker.last_seen_at.isoformat(),
            }
            for worker in alive
        ],
        "queue_depth": by_status["queued"],
        "running_jobs": [asdict(job) for job in running],
        "jobs_by_status": by_status,
    }


@app.command()
def status(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Show live workers, queue depth, running jobs and jobs by status, from the database.

    Reads the database of the STEEP_* settings directly, so it needs no API key.

    Exit codes:
    0 printed
    3 the database could not be read
    """
    settings = operator_settings(data_dir)
    with database_errors(settings):
        content = read_status(settings.resolved_database_url)
    if as_json:
        print_json(content)
        return
    _print_status(content)


def _print_status(content: dict[str, Any]) -> None:
    now = utcnow()
    # A narrow terminal folds ids over several lines instead of cutting them short.
    table = Table(title=f"Workers alive: {len(content['workers_alive'])}")
    table.add_column("worker", overflow="fold")
    for column in ("host", "pid"):
        table.add_column(column)
    table.add_column("job", overflow="fold")
    table.add_column("last seen")
    for worker in content["workers_alive"]:
        seen = (now - datetime.fromisoformat(worker["last_seen_at"])).total_seconds()
        table.add_row(
            escape(worker["id"]),
            escape(worker["hostname"]),
            str(worker["pid"]),
            escape(worker["job_id"] or "-"),
            f"{seen:.0f} s ago",
        )
    console.print(table)

    console.print(f"Queue depth: {content['queue_depth']}")

    running = Table(title=f"Running jobs: {len(content['running_jobs'])}")
    running.add_column("job", overflow="fold")
    for column in ("tenant", "epoch", "attempt"):
        running.add_column(column)
    running.add_column("worker", overflow="fold")
    running.add_column("samples/s", justify="right")
    for job in content["running_jobs"]:
        rate = job["samples_per_second"]
        running.add_row(
            escape(job["id"]),
            escape(job["tenant"]),
            f"{job['epoch']}/{job['epochs']}",
            str(job["attempt"]),
            escape(job["worker_id"] or "-"),
            "-" if rate is None else f"{rate:,.0f}",
        )
    console.print(running)

    counts = "  ".join(f"{name} {count}" for name, count in content["jobs_by_status"].items())
    console.print(f"Jobs by status: {counts}")
