"""INSERT ... ON CONFLICT DO UPDATE of many rows on SQLite and PostgreSQL.

On PostgreSQL ``upsert`` sends all rows as one JSONB parameter of a single
statement, never as the driver's executemany. psycopg 3 runs executemany in
pipeline mode, and after such a call PostgreSQL did not end the transaction once it
had been idle for ``idle_in_transaction_session_timeout``
(``test_multirow_write_keeps_idle_timeout`` shows it). Workers rely on that timeout
to release the job row when they are paused inside a transaction. A multi-row
VALUES statement avoids the pipeline too, but SQLAlchemy compiles it again on
every call. Upserting 200 history rows on this project's test machine took 3 ms
this way, 4 ms with executemany and 15 ms as multi-row VALUES (best of 4).
SQLite has no such timeout, so there the rows go through executemany.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, column, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

__all__ = ["dialect_insert", "upsert"]


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
    insertion) to the update of a conflicting row. Every row must have the same
    keys, and their values must be JSON-serializable on PostgreSQL.
    """
    if not rows:
        return
    statement = dialect_insert(session, model)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.from_select(list(rows[0]), _json_rows(model, rows))
        parameters = None
    else:
        parameters = list(rows)
    statement = statement.on_conflict_do_update(
        index_elements=index_elements, set_=set_(statement.excluded)
    )
    session.execute(statement, parameters)


def _json_rows(model: type[Any], rows: Sequence[Mapping[str, Any]]) -> Any:
    """Return a SELECT of ``rows``, bound as one JSONB array, typed as ``model``'s columns."""
    table = model.__table__
    names = list(rows[0])
    source = (
        func.jsonb_to_recordset(bindparam("rows", list(rows), type_=postgresql.JSONB))
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived(name="source", with_types=True)
    )
    return select(*(source.c[name] for name in names))
