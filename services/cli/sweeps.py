"""``steep sweep FILE``, ``steep sweeps`` and ``steep experiments``.

Exit codes: 0 ok (with --wait: the sweep succeeded), 1 the sweep failed or was
cancelled, or its state does not allow the request (409), 2 bad input (another 4xx
response, such as a 401 for a missing or rejected API key, or an unreadable file), 3
the service cannot be reached, 4 the sweep does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from services.cli.output import table_console
from services.cli.remote import (
    EXIT_FAILED,
    JsonOption,
    UrlOption,
    connect,
    print_json,
    read_json_object,
)
from services.client import Client, Sweep
from services.client_progress import ProgressLines

app = typer.Typer()
sweeps_app = typer.Typer(
    name="sweeps",
    help="List sweeps on a running steep service, or show, watch or cancel one.\n\n"
    "Exit codes:\n"
    "0 ok\n"
    "1 the sweep failed or its state does not allow the request (409)\n"
    "2 bad input, or no valid API key was sent\n"
    "3 the service could not be reached\n"
    "4 no such sweep",
    invoke_without_command=True,
)
app.add_typer(sweeps_app, name="sweeps")
console = table_console()
error_console = Console(stderr=True)

SweepIdArgument = Annotated[str, typer.Argument(help="The sweep's id.", metavar="SWEEP_ID")]
LEADERBOARD_ROWS = 10


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def sweep_summary(sweep: Sweep) -> str:
    """Return one line of the sweep's status, trial counts and objective, as plain text."""
    counts = ", ".join(f"{count} {status}" for status, count in sorted(sweep.counts.items()))
    objective = f"{sweep.objective['mode']} {sweep.objective['metric']}"
    return (
        f"sweep {sweep.id} ({sweep.name or sweep.method}): {sweep.status}, "
        f"{sweep.n_trials} trials ({counts}), objective {objective}"
    )


def sweep_tables(sweep: Sweep, rows: int = LEADERBOARD_ROWS) -> Group:
    """Return the sweep's summary line, trial counts and the top of its leaderboard."""
    leaderboard = Table(title=escape(sweep_summary(sweep)), title_justify="left")
    leaderboard.add_column("rank", justify="right")
    leaderboard.add_column("trial", justify="right")
    leaderboard.add_column(sweep.objective["metric"], justify="right")
    leaderboard.add_column("epoch", justify="right")
    leaderboard.add_column("status")
    leaderboard.add_column("parameters")
    leaderboard.add_column("job", no_wrap=True, min_width=32)
    for entry in sweep.leaderboard[:rows]:
        parameters = ", ".join(f"{path}={value}" for path, value in entry.parameters.items())
        leaderboard.add_row(
            str(entry.rank),
            str(entry.index),
            _value(entry.value),
            str(entry.epoch),
            entry.status,
            escape(parameters),
            entry.job_id,
        )
    parts: list[Table | str] = [leaderboard]
    stopped = [trial for trial in sweep.trials if trial.stop_reason == "early_stopped"]
    for trial in stopped[:rows]:
        parts.append(f"trial {trial.index} stopped early: {escape(trial.stop_message or '')}")
    if sweep.stop_message:
        parts.append(escape(sweep.stop_message))
    return Group(*parts)


def _follow(client: Client, sweep: Sweep, as_json: bool) -> Sweep:
    if as_json:
        return client.wait_sweep(sweep.id)
    if not error_console.is_terminal:
        # A file or a CI log would receive the live view only when it stops.
        lines = ProgressLines(error_console)
        return client.wait_sweep(
            sweep.id, on_update=lambda state: lines.show(sweep_summary(state), now=state.finished)
        )
    # Transient: the live view goes away at the end, and _report prints the final state once.
    with Live(
        sweep_tables(sweep), console=error_console, refresh_per_second=2, transient=True
    ) as live:
        return client.wait_sweep(sweep.id, on_update=lambda state: live.update(sweep_tables(state)))


def _report(sweep: Sweep, as_json: bool) -> None:
    if as_json:
        print_json(sweep.raw)
    else:
        console.print(sweep_tables(sweep))


@app.command()
def sweep(
    path: Annotated[
        Path,
        typer.Argument(
            help="The sweep, a JSON file: base (a job spec), method, parameters, objective, "
            "max_parallel and early_stopping.",
            metavar="SWEEP.json",
        ),
    ],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the sweep until it ends.")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a sweep and print its trials; with --wait, follow its leaderboard to the end.

    Exit codes:
    0 submitted (with --wait: at least one trial succeeded)
    1 the sweep failed or was cancelled
    2 the file or a trial's spec was rejected, or no valid API key was sent
    3 the service could not be reached
    """
    body = read_json_object(path, "a sweep")
    with connect(url) as client:
        submitted = client.submit_sweep(body)
        if not as_json:
            error_console.print(
                f"submitted sweep [bold]{submitted.id}[/bold] with {submitted.n_trials} trials "
                f"to {client.base_url}"
            )
        result = _follow(client, submitted, as_json) if wait else submitted
    _report(result, as_json)
    if wait and result.status != "succeeded":
        raise typer.Exit(EXIT_FAILED)


@sweeps_app.callback()
def list_sweeps(
    context: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="running, succeeded, failed or cancelled; repeatable."),
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="Keep sweeps of this experiment.")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=500, help="Maximum number of sweeps to list.")
    ] = 50,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List sweeps, newest first, with their trial counts.

    Exit codes:
    0 listed
    2 a filter was rejected, or no valid API key was sent
    3 the service could not be reached
    """
    if context.invoked_subcommand is not None:
        return
    with connect(url) as client:
        page = client.list_sweeps(status=status, experiment=experiment, limit=limit)
    if as_json:
        print_json([item.raw for item in page.items])
        return
    if not page.items:
        filtered = status or experiment
        console.print(
            "no sweeps match the filters" if filtered else f"no sweeps on {client.base_url} yet"
        )
        return
    table = Table(title=f"sweeps on {client.base_url}")
    # Ids stay whole, so that they can be copied into the next command.
    table.add_column("id", no_wrap=True, min_width=32)
    for column in ("name", "experiment", "status", "method", "trials", "counts"):
        table.add_column(column)
    for item in page.items:
        table.add_row(
            item.id,
            escape(item.name or ""),
            escape(item.experiment),
            item.status,
            item.method,
            str(item.n_trials),
            ", ".join(f"{count} {name}" for name, count in sorted(item.counts.items())),
        )
    console.print(table)


@sweeps_app.command("show")
def show_sweep(
    sweep_id: SweepIdArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Show a sweep's trial counts and leaderboard.

    Exit codes:
    0 shown
    2 no valid API key was sent
    3 the service could not be reached
    4 no such sweep
    """
    with connect(url) as client:
        result = client.get_sweep(sweep_id)
    _report(result, as_json)


@sweeps_app.command("watch")
def watch_sweep(
    sweep_id: SweepIdArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Follow a sweep's leaderboard until the sweep ends.

    Exit codes:
    0 the sweep succeeded
    1 it failed or was cancelled
    2 no valid API key was sent
    3 the service could not be reached
    4 no such sweep
    """
    with connect(url) as client:
        result = _follow(client, client.get_sweep(sweep_id), as_json)
    _report(result, as_json)
    if result.status != "succeeded":
        raise typer.Exit(EXIT_FAILED)


@sweeps_app.command("cancel")
def cancel_sweep(
    sweep_id: SweepIdArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Cancel a sweep: no more trials start, and its queued and running jobs stop.

    Exit codes:
    0 cancelled
    1 the sweep has already ended (409)
    2 no valid API key was sent
    3 the service could not be reached
    4 no such sweep
    """
    with connect(url) as client:
        result = client.cancel_sweep(sweep_id)
    if as_json:
        print_json(result.raw)
    else:
        console.print(f"sweep {result.id} cancelled")


@app.command()
def experiments(
    limit: Annotated[
        int, typer.Option(min=1, max=500, help="Maximum number of experiments to list.")
    ] = 50,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List experiments with job counts by status and the best job of each.

    Exit codes:
    0 listed
    2 no valid API key was sent
    3 the service could not be reached
    """
    with connect(url) as client:
        page = client.list_experiments(limit=limit)
    if as_json:
        print_json([item.raw for item in page.items])
        return
    table = Table(title=f"experiments on {client.base_url}")
    for column in ("experiment", "jobs", "counts", "best job", "best value"):
        table.add_column(column)
    for item in page.items:
        best = item.best
        table.add_row(
            escape(item.name),
            str(item.n_jobs),
            ", ".join(f"{count} {name}" for name, count in sorted(item.counts.items())),
            escape(f"{best.name or best.job_id} ({best.job_id})") if best else "-",
            f"{best.monitor} {best.value:.4g}" if best else "-",
        )
    console.print(table)
