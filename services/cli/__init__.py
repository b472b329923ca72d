"""The ``steep`` command line.

Each command module in this package defines its commands on its own
``app = typer.Typer()``, and the top-level app below adds it with ``add_typer``
and no group name, so its commands appear directly under ``steep`` (``steep train``,
not ``steep local train``). Adding a module takes its import and one
``app.add_typer(module.app)`` line. Commands print with rich and exit 2 for input
that the user must fix.
"""

import typer

from services.cli import datasets, jobs, keys, local, remote, service, status, sweeps

app = typer.Typer(
    name="steep",
    help="Train neural networks with steep's NumPy engine, here or on a steep service.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(local.app)
app.add_typer(remote.app)
app.add_typer(service.app)
app.add_typer(datasets.app, name="datasets")
app.add_typer(jobs.app, name="jobs")
app.add_typer(keys.app, name="keys")
app.add_typer(sweeps.app)
app.add_typer(status.app)


def main() -> None:
    """Run the ``steep`` console script."""
    app()
