"""Readiness checks: can this process reach its database and its broker right now?"""

from __future__ import annotations

from kombu import Connection
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from services.settings import Settings
from services.store.db import session_scope

__all__ = ["BROKER_TIMEOUT_SECONDS", "check_broker", "check_database", "failed_checks"]

BROKER_TIMEOUT_SECONDS = 2.0


def check_database(settings: Settings) -> str | None:
    """Run ``SELECT 1``; return the error message, or None when it succeeds."""
    try:
        with session_scope(settings.resolved_database_url, write=False) as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return f"database unreachable: {error.__class__.__name__}: {error}".splitlines()[0]
    return None


def check_broker(settings: Settings) -> str | None:
    """Open and close one broker connection; return the error message, or None."""
    try:
        with Connection(
            settings.resolved_broker_url, connect_timeout=BROKER_TIMEOUT_SECONDS
        ) as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS
            )
    except Exception as error:  # kombu raises many types for an unreachable broker
        return f"broker unreachable: {error.__class__.__name__}: {error}".splitlines()[0]
    return None


def failed_checks(settings: Settings) -> list[str]:
    """Run every check and return the messages of those that failed."""
    results = [check_database(settings), check_broker(settings)]
    return [message for message in results if message is not None]
