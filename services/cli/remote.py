"""Commands that talk to a running steep service: ``steep submit``, and the helpers that
``steep jobs``, ``steep sweep`` and ``steep experiments`` share.

Every remote command exits with a code that scripts can test, and ``exit_code_for`` is
the one place that maps an error response to its code:

- 0: done (for a command that waits: the job or sweep succeeded)
- 1: the job or sweep failed or was cancelled, or the request conflicts with the
  state of the job, sweep or dataset (409), such as cancelling a finished job
- 2: bad input: the file cannot be read, or the service rejected the request
  (another 4xx, including a 401 for a missing or rejected API key)
- 3: the service cannot be reached, or failed (5xx)
- 4: the job or sweep does not exist
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.output import table_console
from services.client import Client, ConflictError, Job, NotFoundError, SteepError
from services.settings import get_settings

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_UNREACHABLE",
    "JsonOption",
    "UrlOption",
    "connect",
    "exit_code_for",
    "fail",
    "metrics_table",
    "new_client",
    "print_json",
    "print_outcome",
    "read_json_object",
]

app = typer.Typer()
console = table_console()
error_console = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Base URL of the steep service. Default: from the settings."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4


def new_client(url: str | None) -> Client:
    """Return a client on ``url`` (default: the settings' base URL); it sends the API key
    of ``STEEP_API_KEY``, if set."""
    return Client(url or get_settings().base_url)


@contextmanager
def connect(url: str | None) -> Iterator[Client]:
    """Open a client on ``url`` (default: the settings' base URL).

    A failed request inside the block prints its error and exits with the code of
    ``exit_code_for``, or 3 for a connection that broke during a response.
    """
    base_url = url or get_settings().base_url
    try:
        with new_client(base_url) as client:
            yield client
    except SteepError as error:
        fail(str(error), exit_code_for(error))
    except httpx.TransportError as error:  # a stream that broke after it started
        fail(f"Cannot reach steep at {base_url}: {error}", EXIT_UNREACHABLE)


def exit_code_for(error: SteepError) -> int:
    """Return 4 for a 404, 1 for a 409, 3 for an unreachable service or a 5xx, and 2 for
    another 4xx, including a 401 for a missing or rejected API key."""
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, ConflictError):
        return EXIT_FAILED
    if error.status == 0 or error.status >= 500:
        return EXIT_UNREACHABLE
    return EXIT_BAD_INPUT


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` in red on stderr and exit with ``code``."""
    error_console.print(f"[red]{escape(message)}[/red]", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(content: Any) -> None:
    """Print ``content`` as plain indented JSON on stdout, never wrapped or colored."""
    typer.echo(json.dumps(content, indent=2, default=str))


def read_json_object(path: Path, description: str) -> dict[str, Any]:
    """Read a JSON object from ``path``; exit 2 with the reason when it cannot."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        fail(f"Cannot read {path}: {error.strerror}", EXIT_BAD_INPUT)
    except json.JSONDecodeError as error:
        fail(f"{path} is not valid JSON: {error}", EXIT_BAD_INPUT)
    if not isinstance(content, dict):
        fail(f"{path} must contain a JSON object ({description})", EXIT_BAD_INPUT)
    return content


def metrics_table(job: Job) -> Table:
    """Return a table of the job's latest values and its best monitored value.

    The title leaves out the job's id, because a narrow table would wrap it over two
    lines. Callers print the id on a line of its own.
    """
    table = Table(title=f"{job.status} ({job.stop_reason or 'no stop reason'})")
    table.add_column("value")
    table.add_column("latest epoch", justify="right")
    for name, value in job.metrics.items():
        if name.startswith("grad_norm.") or value is None:
            continue
        table.add_row(name, f"{value:.6g}")
    if job.best:
        best = "-" if job.best.value is None else f"{job.best.value:.6g}"
        table.add_row(f"best {job.best.monitor or ''}", best)
        table.add_row("best epoch", str(job.best.epoch))
    return table


def print_outcome(job: Job, base_url: str) -> None:
    """Print a finished job's id, metrics, stop message or error, and its dashboard page."""
    console.print(f"job {job.id}", highlight=False, soft_wrap=True)
    console.print(metrics_table(job))
    if job.stop_message:
        console.print(escape(job.stop_message), highlight=False)
    if job.error:
        error_console.print(f"[red]{escape(job.error.type)}: {escape(job.error.message)}[/red]")
    console.print(f"job page: {base_url}/#/jobs/{job.id}", highlight=False)


@app.command()
def submit(
    spec_path: Annotated[Path, typer.Argument(help="Job spec, a JSON file.", metavar="SPEC.json")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a job to a running service; with --wait, follow it and print the final metrics.

    Exit codes:
    0 submitted (with --wait: the job succeeded)
    1 the job failed or was cancelled
    2 the spec was rejected, or no valid API key was sent
    3 the service could not be reached
    """
    spec = read_json_object(spec_path, "a job spec")
    with connect(url) as client:
        job = client.submit(spec)
        if not as_json:
            error_console.print(f"submitted job [bold]{job.id}[/bold] to {client.base_url}")
        if wait:
            job = client.wait(job.id, progress=not as_json)

    if as_json:
        print_json(job.raw)
    elif wait:
        print_outcome(job, client.base_url)
    if wait and job.status != "succeeded":
        raise typer.Exit(EXIT_FAILED)
