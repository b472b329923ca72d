"""Fixtures for the durability tests: real steep processes and private Redis and PostgreSQL.

The ``configure`` fixture of ``tests/services/conftest.py`` picks the database and
the broker and exports them as ``STEEP_*`` variables, which the started processes
read. Faults are injected from outside (SIGKILL, SIGSTOP, SIGTERM, server
restarts) or, for crashes at a chosen epoch, with the test-only
``fault_exit_at_epoch`` setting given to one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from services.settings import Settings, get_settings
from services.store.migrate import upgrade
from tests.services.conftest import Configure
from tests.services.durability.private_services import (
    PrivatePostgres,
    PrivateRedis,
    postgres_unavailable_reason,
    redis_server,
)
from tests.services.durability.processes import Processes


@pytest.fixture(scope="session")
def _session_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis | None]:
    """A redis-server for the distributed runs of these tests, or None without redis-server."""
    if redis_server() is None:
        yield None
        return
    server = PrivateRedis(tmp_path_factory.mktemp("durability-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def configure(configure: Configure, mode: str, _session_redis: PrivateRedis | None) -> Configure:
    """The shared ``configure``, with a Redis of these tests' own in the distributed mode.

    Workers of other test runs on this machine may share the machine's Redis. They
    would take these tests' messages and drop them, since the jobs are not in their
    database. Without redis-server, the machine's Redis is used after all.
    """
    if mode != "distributed" or _session_redis is None:
        return configure
    redis.Redis.from_url(_session_redis.url).flushdb()
    broker_url = _session_redis.url

    def configure_with_own_redis(**overrides: Any) -> Settings:
        return configure(**{"broker_url": broker_url, **overrides})

    configure_with_own_redis()
    return configure_with_own_redis


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start steep processes with the settings ``configure`` exported; all are killed at the end."""
    started = Processes(tmp_path, get_settings)
    yield started
    started.kill_all()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A running redis-server of this test only."""
    if redis_server() is None:
        pytest.skip("redis-server is not installed, so Redis cannot be restarted in a test")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL of this test only, with steep's schema in database ``steep``."""
    reason = postgres_unavailable_reason()
    if reason is not None:
        pytest.skip(f"cannot start a private PostgreSQL: {reason}")
    server = PrivatePostgres()
    try:
        server.start()
        server.create_database()
        upgrade(server.url)
        yield server
    finally:
        server.remove()
