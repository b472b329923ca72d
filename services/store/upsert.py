"""INSERT ... ON CONFLICT DO UPDATE on SQLite and PostgreSQL.

``upsert`` writes many rows as multi-row VALUES statements, never as the driver's
executemany. psycopg 3 runs executemany in pipeline mode, and after such a call
PostgreSQL did not end the transaction once it had been idle for
``idle_in_transaction_session_timeout`` (``test_paused_worker.py`` shows it).
Workers rely on that timeout to release the job row when they are paused
inside a transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

__all__ = ["dialect_insert", "upsert"]

# Bound parameters per statement. SQLite allows 32,766 and PostgreSQL 65,535.
MAX_PARAMETERS = 10_000


def dialect_insert(session: Session, model: type[Any]) -> Any:
    """Return an INSERT into ``model``'s table that supports ON CONFLICT.

    Raises:
        NotImplementedError: the session's database is neither SQLite nor PostgreSQL.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"upserts on {dialect} are not supported yet")


def upsert(
    session: Session,
    model: type[Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    index_elements: list[str],
    set_: Callable[[Any], Mapping[str, Any]],
) -> None:
    """Insert ``rows`` into ``model``'s table and update those whose key already exists.

    ``set_`` maps the statement's ``excluded`` columns (the values proposed for
    insertion) to the update of a conflicting row. Every row must have the same keys.
    """
    if not rows:
        return
    per_statement = max(1, MAX_PARAMETERS // len(rows[0]))
    for start in range(0, len(rows), per_statement):
        statement = dialect_insert(session, model).values(list(rows[start : start + per_statement]))
        statement = statement.on_conflict_do_update(
            index_elements=index_elements, set_=set_(statement.excluded)
        )
        session.execute(statement)
