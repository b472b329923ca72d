"""``steep jobs``: list, show, watch, and use the jobs of a running steep service.

``steep jobs`` alone lists jobs; its subcommands act on one job. Exit codes: 0 ok,
1 the job failed or was cancelled (``watch``), or its state does not allow the
request (409), 2 bad input (another 4xx response, such as a 401 for a missing or
rejected API key, or an unreadable file), 3 the service cannot be reached, 4 the job
does not exist.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from services.cli.output import table_console
from services.cli.remote import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    JsonOption,
    UrlOption,
    connect,
    fail,
    metrics_table,
    print_json,
    print_outcome,
)
from services.client import Client

app = typer.Typer(
    name="jobs",
    help="List jobs on a running steep service, or act on one job (show, watch, history, "
    "download, predict, cancel, delete).\n\n"
    "Exit codes:\n"
    "0 ok\n"
    "1 the job failed or its state does not allow the request (409)\n"
    "2 bad input, or no valid API key was sent\n"
    "3 the service could not be reached\n"
    "4 no such job",
    invoke_without_command=True,
)
console = table_console()

JobIdArgument = Annotated[str, typer.Argument(help="The job's id.", metavar="JOB_ID")]


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.callback()
def list_jobs(
    context: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Keep jobs with this status; repeat for several."),
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="Keep jobs of this experiment.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Keep jobs on this dataset id.")] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="key:value; repeat to require several tags."),
    ] = None,
    sort: Annotated[
        str,
        typer.Option(help="created_at, finished_at or a metric name; a leading - is descending."),
    ] = "-created_at",
    limit: Annotated[int, typer.Option(min=1, max=500, help="Most jobs to list.")] = 50,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first by default.

    Exit codes:
    0 listed
    2 a filter was rejected, or no valid API key was sent
    3 the service could not be reached
    """
    if context.invoked_subcommand is not None:
        return
    tags = {}
    for item in tag or []:
        key, colon, value = item.partition(":")
        if not colon or not key:
            fail(f"--tag must have the form key:value, got {item!r}", EXIT_BAD_INPUT)
        tags[key] = value
    with connect(url) as client:
        page = client.list_jobs(
            status=status, experiment=experiment, dataset=dataset, tags=tags, sort=sort, limit=limit
        )
    if as_json:
        print_json([job.raw for job in page.items])
        return
    if not page.items:
        filtered = status or experiment or dataset or tags
        console.print(
            "no jobs match the filters" if filtered else f"no jobs on {client.base_url} yet"
        )
        return
    table = Table(title=f"jobs on {client.base_url}")
    # Ids stay whole, so that they can be copied into the next command.
    table.add_column("id", no_wrap=True, min_width=32)
    for column in ("name", "experiment", "status", "epoch", "train_loss", "val_loss"):
        table.add_column(column, justify="right" if column == "epoch" else "left")
    table.add_column("created")
    for job in page.items:
        table.add_row(
            job.id,
            escape(job.name or ""),
            escape(job.experiment),
            job.status,
            f"{job.progress.epoch}/{job.progress.epochs}",
            _format(job.metrics.get("train_loss")),
            _format(job.metrics.get("val_loss")),
            job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else "",
        )
    console.print(table)


@app.command()
def show(job_id: JobIdArgument, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Show a job: status, progress, latest metrics, best value, error and status changes.

    Exit codes:
    0 shown
    2 no valid API key was sent
    3 the service could not be reached
    4 no such job
    """
    with connect(url) as client:
        job = client.get(job_id)
    if as_json:
        print_json(job.raw)
        return
    console.print(f"[bold]{escape(job.name or job.id)}[/bold] ({job.id})", highlight=False)
    console.print(
        f"experiment {escape(job.experiment)}, dataset {escape(job.dataset)}, "
        f"{job.n_parameters:,} parameters, epoch {job.progress.epoch}/{job.progress.epochs}",
        highlight=False,
    )
    console.print(metrics_table(job))
    if job.stop_message:
        console.print(escape(job.stop_message), highlight=False)
    if job.error:
        console.print(f"[red]{escape(job.error.type)}: {escape(job.error.message)}[/red]")
    transitions = Table(title="status changes")
    for column in ("at", "status", "attempt", "reason"):
        transitions.add_column(column)
    for change in job.transitions:
        transitions.add_row(
            change.at.strftime("%H:%M:%S"),
            change.status,
            str(change.attempt),
            escape(change.reason or ""),
        )
    console.print(transitions)


@app.command()
def watch(
    job_id: JobIdArgument,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a job with a progress bar and its latest losses until it ends.

    Exit codes:
    0 the job succeeded
    1 it failed or was cancelled
    2 no valid API key was sent
    3 the service could not be reached
    4 no such job
    """
    with connect(url) as client:
        job = client.wait(job_id, progress=not as_json)
    if as_json:
        print_json(job.raw)
    else:
        print_outcome(job, client.base_url)
    if job.status != "succeeded":
        raise typer.Exit(EXIT_FAILED)


@app.command()
def history(
    job_id: JobIdArgument,
    max_points: Annotated[
        int | None,
        typer.Option(min=6, help="Downsample to at most this many epochs."),
    ] = None,
    grad_norms: Annotated[
        bool, typer.Option("--grad-norms", help="Include the per-layer gradient norms.")
    ] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a job's per-epoch history: one row per epoch, one column per value.

    Exit codes:
    0 printed
    2 no valid API key was sent
    3 the service could not be reached
    4 no such job
    """
    with connect(url) as client:
        columns = client.history(job_id, max_points=max_points)
    if not grad_norms:
        columns = {name: values for name, values in columns.items() if "grad_norm." not in name}
    if as_json:
        print_json(columns)
        return
    table = Table(title=f"history of job {job_id}")
    for name in columns:
        table.add_column(name, justify="right")
    for row in zip(*columns.values(), strict=True):
        table.add_row(*(_format(value) for value in row))
    console.print(table)


@app.command()
def download(
    job_id: JobIdArgument,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="File to write. Default: JOB_ID.npz (or .json)."),
    ] = None,
    format: Annotated[
        Literal["npz", "json"] | None,
        typer.Option(help="npz or json. Default: from the file's suffix, else npz."),
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download a finished job's parameter file, to predict without the service.

    `steep predict` and core.paramfile.load_model read the file.

    Exit codes:
    0 written
    1 the job has no weights yet (409)
    2 no valid API key was sent
    3 the service could not be reached
    4 no such job
    """
    path = out or Path(f"{job_id}.{format or 'npz'}")
    with connect(url) as client:
        written = client.download_weights(job_id, path, format=format)
    if as_json:
        print_json({"job_id": job_id, "path": str(written), "size_bytes": written.stat().st_size})
    else:
        console.print(f"wrote {escape(str(written))} ({written.stat().st_size:,} bytes)")


@app.command()
def predict(
    job_id: JobIdArgument,
    data: Annotated[
        Path,
        typer.Argument(
            help="Rows to predict: a CSV file with a header row, or a JSON file with a list "
            'of rows or {"inputs": [...]}.',
            metavar="DATA",
        ),
    ],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Predict with a job's trained model on the service.

    CSV columns that are not inputs of the model (the target, an id) are left
    out, as `steep predict` does; a JSON file is sent as it is.

    Exit codes:
    0 predicted
    1 the job has no trained model (409)
    2 the rows were rejected or cannot be read, or no valid API key was sent
    3 the service could not be reached
    4 no such job
    """
    rows = _read_rows(data)
    with connect(url) as client:
        if data.suffix.lower() == ".csv":
            rows = _input_columns_only(client, job_id, rows)
        result = client.predict(job_id, rows)
    if as_json:
        print_json({"outputs": result.outputs, "predictions": result.predictions})
        return
    table = Table(title=f"predictions of job {job_id}")
    table.add_column("row", justify="right")
    table.add_column("prediction")
    for index, prediction in enumerate(result.predictions):
        table.add_row(str(index), escape(_format(prediction)))
    console.print(table)


def _input_columns_only(client: Client, job_id: str, rows: list[Any]) -> list[Any]:
    """Keep only the model's input columns of CSV rows (dicts keyed by the header)."""
    dataset = client.get_dataset(client.get(job_id).dataset)
    inputs = [column["name"] for column in dataset["columns"]]
    return [{name: row[name] for name in inputs if name in row} for row in rows]


def _read_rows(path: Path) -> list[Any]:
    """Read prediction rows: CSV rows as dicts keyed by the header, or a JSON list of rows."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        fail(f"Cannot read {path}: {error.strerror}", EXIT_BAD_INPUT)
    if path.suffix.lower() == ".csv":
        return [
            {name: _number_or_text(value) for name, value in row.items()}
            for row in csv.DictReader(text.splitlines())
        ]
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"{path} is neither a .csv file nor valid JSON: {error}", EXIT_BAD_INPUT)
    if isinstance(content, dict):
        content = content.get("inputs")
    if not isinstance(content, list):
        fail(f'{path} must contain a list of rows or {{"inputs": [...]}}', EXIT_BAD_INPUT)
    return content


def _number_or_text(value: str | None) -> float | str | None:
    """Turn a CSV cell into a number where it is one; an empty cell is a missing value."""
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        return value


@app.command()
def cancel(job_id: JobIdArgument, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Cancel a queued job, or ask a running one to stop at the end of its current batch.

    Exit codes:
    0 cancelled or cancel requested
    1 the job has already finished (409)
    2 no valid API key was sent
    3 the service could not be reached
    4 no such job
    """
    with connect(url) as client:
        job = client.cancel(job_id)
    if as_json:
        print_json(job.raw)
    elif job.status == "cancelled":
        console.print(f"job {job.id} cancelled")
    else:
        console.print(
            f"job {job.id} is {job.status}; it stops at the end of its current batch "
            "once its worker sees the cancel request"
        )


@app.command()
def delete(job_id: JobIdArgument, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Delete a job that is not running, with its history and weights.

    Exit codes:
    0 deleted
    1 the job is running (409)
    2 no valid API key was sent
    3 the service could not be reached
    4 no such job
    """
    with connect(url) as client:
        client.delete(job_id)
    if as_json:
        print_json({"job_id": job_id, "deleted": True})
    else:
        console.print(f"job {job_id} deleted")
