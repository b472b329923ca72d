"""Service settings: one pydantic-settings class, read from ``STEEP_*`` environment variables.

Nothing else in steep reads the environment. Embedded mode needs no settings at
all: the database and the broker default to SQLite files in ``data_dir``.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.spec import MAX_EPOCHS

__all__ = ["Settings", "get_settings", "is_loopback"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STEEP_", extra="ignore")

    data_dir: Path = Field(
        Path(".steep"), description="Folder for the SQLite files in embedded mode."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db. "
        "Default: sqlite:///<data_dir>/steep.db.",
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker URL, e.g. redis://host:6379/0. "
        "Default: sqla+sqlite:///<data_dir>/broker.db.",
    )
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    public_url: str | None = Field(None, description="URL clients use; default http://host:port.")

    blas_threads: int = Field(1, ge=1, le=256, description="BLAS threads per worker process.")
    worker_concurrency: int = Field(
        1, ge=1, le=64, description="Worker processes per `steep worker`."
    )
    lease_seconds: float = Field(
        30.0, gt=0, description="How long a claim on a running job lasts without renewal."
    )
    flush_interval_seconds: float = Field(
        1.0, gt=0, description="How often a worker writes buffered history and renews its lease."
    )
    checkpoint_interval_seconds: float = Field(
        10.0, ge=0, description="Minimum time between checkpoints; 0 checkpoints every epoch."
    )
    max_attempts: int = Field(
        3, ge=1, le=100, description="Claims before a job fails as worker_lost."
    )
    reaper_interval_seconds: float = Field(5.0, gt=0, description="How often the reaper runs.")
    requeue_after_seconds: float = Field(
        30.0, gt=0, description="A queued job unclaimed this long gets its message sent again."
    )
    max_job_seconds: float | None = Field(
        None, gt=0, description="Server-wide cap on a job's training time."
    )
    shutdown_wait_seconds: float = Field(
        10.0,
        ge=0,
        description="After SIGTERM, how long a worker lets the current epoch run so that it "
        "can checkpoint that epoch before handing the job back; past this it stops at once "
        "and the job resumes from its last stored checkpoint.",
    )
    broker_visibility_timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="Redis only: seconds before a fetched but unacknowledged message is "
        "delivered again. Default: kombu's (one hour).",
    )

    require_keys: bool = Field(
        False,
        description="Require an API key on every request. Keys are required anyway unless "
        "the API listens on loopback in embedded mode and no public_url names another "
        "host; there requests without a key belong to the tenant 'local'.",
    )
    key_cache_seconds: float = Field(
        2.0,
        ge=0,
        description="How long an API process reuses a key it found valid before it looks "
        "the key up again, so a revoked key stops working within this time; 0 looks every "
        "request's key up.",
    )

    api_key: SecretStr | None = Field(
        None,
        description="Client side: the API key the steep CLI sends to a service (STEEP_API_KEY).",
    )

    max_upload_bytes: int = Field(
        100 * 2**20, gt=0, description="Largest dataset upload, in bytes."
    )
    max_request_bytes: int = Field(
        2**20, gt=0, description="Largest request body other than a dataset upload, in bytes."
    )
    max_running_jobs_per_tenant: int = Field(
        4, gt=0, description="Jobs one tenant may have running; a submit beyond it is a 429."
    )
    max_queued_jobs_per_tenant: int = Field(
        100, gt=0, description="Jobs one tenant may have queued; a submit beyond it is a 429."
    )
    max_epoch_samples: int = Field(
        10**9,
        gt=0,
        description="Most training samples one job may process: epochs times training rows.",
    )
    worker_memory_bytes: int = Field(
        4 * 2**30,
        gt=0,
        description="Memory one job may use in a worker; a job estimated to need more is "
        "refused at submit.",
    )
    max_parameters: int = Field(20_000_000, gt=0, description="Largest model, in parameters.")
    max_history_points: int = Field(
        100_000,
        gt=0,
        le=MAX_EPOCHS,
        description=f"Most epochs a job may train; at most {MAX_EPOCHS:,}, the engine's limit.",
    )
    max_sweep_trials: int = Field(
        1000, gt=0, description="Most trials one sweep may have; a larger sweep is a 422."
    )

    log_level: str = Field("INFO", description="Logging level for steep's processes.")
    log_json: bool = Field(False, description="Write logs as JSON lines.")

    fault_exit_at_epoch: int | None = Field(
        None,
        ge=0,
        description="For tests only: a worker process that trains a job ends itself with "
        "os._exit(1) once the job has completed this many epochs (0: right after the claim, "
        "before the first lease renewal). Never set it in a deployment.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'steep.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def is_embedded(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def keys_required(self) -> bool:
        """Whether a request without an API key is refused (see ``require_keys``).

        A ``public_url`` with another host means a proxy on this machine forwards
        other users' requests to the loopback address, so keys are required then too.
        """
        public_host = urlsplit(self.public_url).hostname if self.public_url else None
        local_only = is_loopback(self.host) and (public_host is None or is_loopback(public_host))
        return self.require_keys or not (self.is_embedded and local_only)

    @property
    def base_url(self) -> str:
        """The URL clients use: ``public_url``, or the address the API listens on."""
        return self.public_url or self.listen_url

    @property
    def listen_url(self) -> str:
        """The URL of the address the API listens on, as reached from this machine.

        A wildcard host (``0.0.0.0``, ``::``) is reached at the loopback address.
        """
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
