"""Shared fixtures for the service tests: a migrated database and a broker, in both modes.

- ``mode``: ``"embedded"`` (SQLite database and SQLite broker files in a temporary
  folder) or ``"distributed"`` (a database created for this test session on the
  PostgreSQL at 127.0.0.1:5432, and Redis database 15 at 127.0.0.1:6379). A test
  that requests ``mode``, ``service_urls``, ``configure`` or ``settings`` runs
  once per mode; the distributed run carries the ``distributed`` mark. Without
  PostgreSQL or Redis the distributed runs fail; deselect them with
  ``-m "not distributed"``.
- ``service_urls``: ``(database_url, broker_url)`` for the mode. The database is
  migrated once per session, and the PostgreSQL database is dropped at the end.
- ``configure(**overrides)``: builds ``Settings`` for those URLs with short test
  intervals plus ``overrides``, exports them as ``STEEP_*`` variables (so
  ``get_settings()``, ``celery_app()`` and child processes see the same values)
  and returns them. Call it again to change values within a test.
- ``settings``: ``configure()`` with no overrides.

Each test starts with one API key of the tenant ``local``, in ``settings.api_key``
and ``STEEP_API_KEY`` (which the CLI sends), because distributed mode needs a key on
every request; ``tests.services.auth`` builds clients that send it.

Before each test that uses ``configure`` or ``settings``, every table's rows
are deleted and the broker's queue is purged, so tests do not see each other's
jobs or messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import delete

from services.keys import LOCAL_TENANT, create_key
from services.settings import Settings, get_settings
from services.store.db import dispose_engine, session_scope
from services.store.migrate import upgrade
from services.store.models import Base
from services.worker.celery_app import celery_app

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
REDIS_URL = "redis://127.0.0.1:6379/15"

# Short intervals so that flushes, leases and the reaper act within a test's time.
TEST_SETTINGS: dict[str, Any] = {
    "flush_interval_seconds": 0.1,
    "checkpoint_interval_seconds": 0.0,
    "lease_seconds": 10.0,
    "reaper_interval_seconds": 0.5,
    "requeue_after_seconds": 30.0,
    "log_level": "INFO",
    # Revocation takes effect at once; test_keys checks the cache with a short lifetime.
    "key_cache_seconds": 0.0,
}

Configure = Callable[..., Settings]


class _Backends:
    """The session's databases and brokers, created on first use and removed at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.urls: dict[str, tuple[str, str]] = {}
        self.postgres_database: str | None = None

    def get(self, mode: str) -> tuple[str, str]:
        if mode not in self.urls:
            self.urls[mode] = self._embedded() if mode == "embedded" else self._distributed()
            upgrade(self.urls[mode][0])
        return self.urls[mode]

    def _embedded(self) -> tuple[str, str]:
        return (
            f"sqlite:///{self.folder / 'steep.db'}",
            f"sqla+sqlite:///{self.folder / 'broker.db'}",
        )

    def _distributed(self) -> tuple[str, str]:
        name = f"steep_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.postgres_database = name
        redis.Redis.from_url(REDIS_URL).flushdb()
        return POSTGRES_URL.format(name=name), REDIS_URL

    def close(self) -> None:
        dispose_engine()
        if self.postgres_database is not None:
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
                connection.execute(
                    f'DROP DATABASE IF EXISTS "{self.postgres_database}" WITH (FORCE)'
                )


@pytest.fixture(scope="session")
def _backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Backends]:
    backends = _Backends(tmp_path_factory.mktemp("steep-services"))
    yield backends
    backends.close()


@pytest.fixture(params=["embedded", pytest.param("distributed", marks=pytest.mark.distributed)])
def mode(request: pytest.FixtureRequest) -> str:
    """The deployment a test runs against: "embedded" or "distributed"."""
    return str(request.param)


@pytest.fixture
def service_urls(mode: str, _backends: _Backends) -> tuple[str, str]:
    """The migrated database URL and the broker URL of ``mode``."""
    return _backends.get(mode)


@pytest.fixture
def configure(
    service_urls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Configure]:
    """Return a function that builds, exports and returns Settings; see the module docstring."""
    database_url, broker_url = service_urls

    def configure_settings(**overrides: Any) -> Settings:
        values = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "broker_url": broker_url,
            "api_key": local_key,
            **TEST_SETTINGS,
            **overrides,
        }
        settings = Settings(**values)
        for name in Settings.model_fields:
            value = getattr(settings, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is None:
                monkeypatch.delenv(f"STEEP_{name.upper()}", raising=False)
            else:
                monkeypatch.setenv(f"STEEP_{name.upper()}", str(value))
        get_settings.cache_clear()
        celery_app.cache_clear()
        return settings

    _delete_all_rows(database_url)
    local_key = create_key(Settings(database_url=database_url), LOCAL_TENANT).secret
    configure_settings()
    celery_app().control.purge()
    yield configure_settings
    get_settings.cache_clear()
    celery_app.cache_clear()


@pytest.fixture
def settings(configure: Configure) -> Settings:
    """Settings for this mode's database and broker, with short test intervals."""
    return configure()


def _delete_all_rows(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
