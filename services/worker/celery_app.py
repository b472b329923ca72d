"""The Celery app, configured for a design where the database row is the truth.

Choices, and why:

- Messages are acknowledged on receipt (``task_acks_late=False``). A message only
  wakes a worker; the job's row says what to do. If the worker dies, the lease on
  the row expires and the reaper sends a new message, so no job depends on the
  broker redelivering one. This also means Redis's visibility timeout never
  redelivers a long job to a second worker.
- ``worker_prefetch_multiplier=1``: a worker holds no more messages than it can
  run, so idle workers get the next job.
- No result backend: results and progress go to the database.
- No ``polling_interval`` transport option: kombu's SQLAlchemy transport (embedded
  mode) passes every transport option to ``create_engine``, which rejects it, so
  that transport polls at kombu's default of once a second.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from services.settings import Settings, get_settings

__all__ = ["RUN_JOB_TASK", "celery_app", "create_celery"]

RUN_JOB_TASK = "steep.run_job"


def create_celery(settings: Settings) -> Celery:
    """A Celery app for the broker in ``settings``."""
    app = Celery("steep", broker=settings.resolved_broker_url)
    app.conf.update(
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_concurrency=settings.worker_concurrency,
        # Messages are acknowledged on receipt, so a busy worker would otherwise fetch
        # the next message and hold it until its job ends. Celery supports this only
        # for Redis (and warns on other brokers). Where it is off, the reaper's resend
        # gets a held job to an idle worker after requeue_after_seconds.
        worker_disable_prefetch=settings.resolved_broker_url.startswith(("redis://", "rediss://")),
        task_default_queue="steep",
    )
    return app


@lru_cache
def celery_app() -> Celery:
    """The process's Celery app, built from the settings on first use."""
    return create_celery(get_settings())
