"""The Celery app, configured for a design where the database row is the truth.

Choices, and why:

- Messages are acknowledged early (``task_acks_late=False``). A message only
  wakes a worker, and the job's row decides what it does. If the worker dies,
  the lease on the row expires and the reaper sends a new message, so no job
  depends on the broker redelivering one. Late acks would add no safety,
  because the claim drops a message for a job that is not queued.
- When "early" is: Celery acks from its event loop once the pool has accepted the
  task. Under the prefork pool that is right away. Under the solo pool the event
  loop is busy running the job, so the ack goes out when the job returns.
- Redis's visibility timeout (``broker_visibility_timeout_seconds``, kombu's
  default is one hour): kombu puts a message that stayed unacknowledged that long
  back in the queue, on a sweep about every 100 s (kombu 5.7's
  ``unacked_restore_interval`` times ``unacked_restore_throttle``). So a solo
  worker's job that trains longer than the timeout has its message delivered
  again, to another worker, whose claim drops it. The job still trains once.
  Keep the timeout longer than most jobs to avoid these extra deliveries.
- ``worker_prefetch_multiplier=1``, and on Redis ``worker_disable_prefetch``: a
  worker holds no more messages than it can run, so idle workers get the next job.
- When a worker dies: the reaper requeues its job once the lease expires and
  sends a new message. The dead worker's own message, if not yet acknowledged,
  comes back after the visibility timeout (Redis) or is lost (the SQLite
  broker); the claim drops it in the first case. A message fetched but not
  started goes back to the queue when a worker closes its connection cleanly.
  In every case the reaper also resends a job left queued for
  ``requeue_after_seconds``, so a Redis restart that empties the queue loses no job.
- Broker outages: the worker's consumer reconnects on its own (Celery retries the
  connection, up to ``broker_connection_max_retries`` times). Publishing never
  retries (``enqueue_job``), because the reaper resends what could not be sent.
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
    """Build a Celery app for the broker in ``settings``."""
    app = Celery("steep", broker=settings.resolved_broker_url)
    is_redis = settings.resolved_broker_url.startswith(("redis://", "rediss://"))
    transport_options: dict[str, float] = {}
    if is_redis and settings.broker_visibility_timeout_seconds is not None:
        transport_options["visibility_timeout"] = settings.broker_visibility_timeout_seconds
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
        worker_disable_prefetch=is_redis,
        broker_transport_options=transport_options,
        task_default_queue="steep",
    )
    return app


@lru_cache
def celery_app() -> Celery:
    """Return the process's Celery app, built from the settings on first use."""
    return create_celery(get_settings())
