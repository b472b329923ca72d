"""Shared parts of the operator commands that work on the database directly
(``steep keys``, ``steep status``): which database, and what to say when it cannot be read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from services.settings import Settings, get_settings

__all__ = ["EXIT_UNREACHABLE", "DataDirOption", "database_errors", "operator_settings"]

EXIT_UNREACHABLE = 3

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        help="The data folder of the embedded service (as given to `steep serve "
        "--data-dir`). Default: STEEP_DATA_DIR, or ./.steep"
    ),
]

stderr_console = Console(stderr=True, soft_wrap=True)


def operator_settings(data_dir: Path | None) -> Settings:
    """Return the process's settings, with ``data_dir`` in place of theirs when given."""
    settings = get_settings()
    if data_dir is None:
        return settings
    return settings.model_copy(update={"data_dir": data_dir.resolve()})


@contextmanager
def database_errors(settings: Settings) -> Iterator[None]:
    """Check the database exists before the block, and turn database errors inside it
    into one sentence on stderr and exit code 3, instead of a traceback.

    An SQLite file that does not exist is reported without being created, so a
    command run in the wrong folder leaves no empty database behind.
    """
    url = settings.resolved_database_url
    safe_url = escape(make_url(url).render_as_string(hide_password=True))
    advice = (
        "check STEEP_DATABASE_URL or --data-dir (the folder given to `steep serve "
        "--data-dir`), and that the database is running and migrated (`steep db upgrade`)"
    )
    database_path = make_url(url).database if settings.is_embedded else None
    if database_path and not Path(database_path).is_file():
        stderr_console.print(f"no steep database at {safe_url}")
        stderr_console.print(advice)
        raise typer.Exit(EXIT_UNREACHABLE)
    try:
        yield
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        stderr_console.print(
            f"could not read the database {safe_url}: {escape(str(reason))}; {advice}"
        )
        raise typer.Exit(EXIT_UNREACHABLE) from None
