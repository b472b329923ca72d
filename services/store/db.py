"""Database engines and sessions, one engine per process.

Pools must not cross a fork: worker processes call ``dispose_engine`` after fork
(see the worker's process-init signal) and get a fresh engine on first use.

SQLite (embedded mode) runs in WAL mode with a busy timeout, so readers never
block the writer and writers wait for each other instead of failing with
"database is locked"; write transactions are kept short by the callers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from services.settings import get_settings

__all__ = ["dispose_engine", "get_engine", "session_scope", "sessionmaker_for"]

SQLITE_BUSY_TIMEOUT_MS = 30_000

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[tuple[str, bool], sessionmaker[Session]] = {}


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN: pysqlite's own handling
        # defers it to the first write, which rules out BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A write transaction takes the write lock at BEGIN and waits for it under
        # busy_timeout. A deferred transaction that reads and then writes could
        # instead fail at once with SQLITE_BUSY when its snapshot is stale.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def create_engine_for(url: str) -> Engine:
    """Create an engine for ``url`` with steep's connection settings."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        _configure_sqlite(engine)
        return engine
    # Up to 40 connections: as many as the API's worker threads (anyio's default limit), so
    # a busy API never opens and closes connections beyond the pool on every request.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)


def get_engine(url: str | None = None) -> Engine:
    """Return the process's engine for ``url`` (default: the settings' database URL)."""
    key = url or get_settings().resolved_database_url
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = create_engine_for(key)
        return engine


def dispose_engine() -> None:
    """Drop every engine of this process (call after fork, and at shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()
        _factories.clear()


def sessionmaker_for(url: str | None = None, *, write: bool = True) -> sessionmaker[Session]:
    """Sessions on the process's engine; ``write=True`` sessions begin with the write lock
    on SQLite (``BEGIN IMMEDIATE``), read sessions with a plain deferred ``BEGIN``.

    Factories are cached with their engine: building a sessionmaker registers events
    and cost about a third of a job read.
    """
    key = (url or get_settings().resolved_database_url, write)
    with _lock:
        factory = _factories.get(key)
    if factory is not None:
        return factory
    engine = get_engine(key[0])
    if write:
        engine = engine.execution_options(sqlite_begin="IMMEDIATE")
    factory = sessionmaker(engine, expire_on_commit=False)
    with _lock:
        return _factories.setdefault(key, factory)


@contextmanager
def session_scope(url: str | None = None, *, write: bool = True) -> Iterator[Session]:
    """Open a session whose transaction commits when the block ends and rolls back on error.

    Keep write blocks short: on SQLite they hold the database's single write lock.
    """
    session = sessionmaker_for(url, write=write)()
    try:
        with session.begin():
            yield session
    finally:
        session.close()
