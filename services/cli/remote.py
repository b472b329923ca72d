"""Commands that talk to a running steep service: ``steep submit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.client import Client, Job, SteepError
from services.settings import get_settings

app = typer.Typer()
console = Console()
error_console = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Base URL of the steep service. Default: from the settings."),
]

# Exit codes that scripts can test.
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        error_console.print(f"[red]Cannot read {path}: {error.strerror}[/red]")
        raise typer.Exit(EXIT_BAD_INPUT) from error
    except json.JSONDecodeError as error:
        error_console.print(f"[red]{path} is not valid JSON: {error}[/red]")
        raise typer.Exit(EXIT_BAD_INPUT) from error
    if not isinstance(spec, dict):
        error_console.print(f"[red]{path} must hold a JSON object (a job spec)[/red]")
        raise typer.Exit(EXIT_BAD_INPUT)
    return spec


def _metrics_table(job: Job) -> Table:
    table = Table(title=f"job {job.id}: {job.status} ({job.stop_reason or 'no stop reason'})")
    table.add_column("value")
    table.add_column("latest epoch", justify="right")
    for name, value in job.metrics.items():
        if name.startswith("grad_norm.") or not isinstance(value, int | float):
            continue
        table.add_row(name, f"{value:.6g}")
    if job.best:
        table.add_row(f"best {job.best.get('monitor', '')}", f"{job.best.get('value')}")
        table.add_row("best epoch", str(job.best.get("epoch")))
    return table


def _follow(client: Client, job: Job) -> Job:
    """Poll the job with a progress bar until it finishes."""
    epochs = job.progress.get("epochs") or 0
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=error_console) as progress:
        task = progress.add_task(job.status, total=epochs or None, loss="")

        def update(current: Job) -> None:
            loss = current.metrics.get("train_loss")
            val_loss = current.metrics.get("val_loss")
            text = "" if loss is None else f"train_loss {loss:.4g}"
            if val_loss is not None:
                text += f"  val_loss {val_loss:.4g}"
            progress.update(
                task,
                description=current.status,
                completed=current.progress.get("epoch", 0),
                loss=text,
            )

        return client.wait(job.id, on_update=update)


@app.command()
def submit(
    spec_path: Annotated[Path, typer.Argument(help="Job spec, a JSON file.", metavar="SPEC.json")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Submit a job to a running service; with --wait, follow it and print the final metrics.

    Exit codes: 0 submitted (or, with --wait, succeeded), 1 the job failed or was
    cancelled, 2 the spec was rejected, 3 the service could not be reached.
    """
    spec = _read_spec(spec_path)
    base_url = url or get_settings().base_url
    with Client(base_url) as client:
        try:
            job = client.submit(spec)
            if not as_json:
                error_console.print(f"submitted job [bold]{job.id}[/bold] to {base_url}")
            if wait:
                job = _follow(client, job) if not as_json else client.wait(job.id)
        except SteepError as error:
            error_console.print(f"[red]{error}[/red]")
            raise typer.Exit(EXIT_BAD_INPUT if error.status < 500 else EXIT_UNREACHABLE) from error
        except httpx.TransportError as error:
            error_console.print(f"[red]Cannot reach steep at {base_url}: {error}[/red]")
            raise typer.Exit(EXIT_UNREACHABLE) from error

    if as_json:
        console.print_json(json.dumps(job.raw))
    elif wait:
        console.print(_metrics_table(job))
        if job.error:
            error_console.print(f"[red]{job.error.get('type')}: {job.error.get('message')}[/red]")
        console.print(f"job page: {base_url}/#/jobs/{job.id}")
    if wait and job.status != "succeeded":
        raise typer.Exit(EXIT_JOB_FAILED)
