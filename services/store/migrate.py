"""Apply Alembic migrations from the packaged ``migrations`` folder."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

__all__ = ["alembic_config", "upgrade"]


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config pointing at steep's migrations, without an alembic.ini file."""
    config = Config()
    # __path__ works for a regular package and for an editable install that maps
    # the folder as a namespace package, where __file__ is None.
    config.set_main_option("script_location", str(Path(next(iter(migrations.__path__)))))
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    """Bring the database at ``database_url`` (default: the settings') up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)
