"""``/metrics``: the service's state and work in the Prometheus text format.

Every metric covers the whole service and carries no tenant, experiment, job or
dataset label, so one tenant learns nothing about another from it. Two sources:

- The database, read at scrape time by ``DatabaseCollector``: jobs by status,
  queue depth, running jobs, live workers, training throughput, and the counters
  that workers and the reaper keep in ``service_counters``. Every API process
  reports the same values for these.
- This API process: request latency by route, measured by ``RequestMetricsMiddleware``.
  Each API process counts only its own requests, so Prometheus sums them over
  processes (the ``instance`` label).

Each app has its own ``CollectorRegistry``, so several apps can live in one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.deps import OperatorDep
from services.api.problems import problem_responses
from services.logging_setup import log_context
from services.store import counters, overview, workers
from services.store.db import session_scope

__all__ = ["DatabaseCollector", "RequestMetricsMiddleware", "install_metrics"]

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# Requests whose path matches no route share this label, so that scanners probing
# random paths cannot create one time series per path.
UNMATCHED_ROUTE = "unmatched"
# Methods outside this set share the label "other", for the same reason.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# The database ---------------------------------------------------------------------------


class DatabaseCollector(Collector):
    """Reads the service's state from the database at every scrape.

    When the database cannot be read, the scrape still succeeds, with
    ``steep_database_up`` 0 and none of the database's metrics.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def collect(self) -> Iterator[Metric]:
        try:
            with session_scope(self.database_url, write=False) as session:
                by_status = overview.count_jobs_by_status(session)
                running = overview.running_jobs(session)
                alive = workers.count_alive_workers(session)
                totals = counters.read_counters(session)
        except SQLAlchemyError as error:
            logger.warning("/metrics could not read the database: %s", error)
            yield _gauge("steep_database_up", "1 when /metrics could read the database.", 0)
            return

        yield _gauge("steep_database_up", "1 when /metrics could read the database.", 1)
        jobs = GaugeMetricFamily("steep_jobs", "Jobs by status.", labels=["status"])
        for status, count in by_status.items():
            jobs.add_metric([status], count)
        yield jobs
        yield _gauge("steep_queue_depth", "Jobs queued and not yet claimed.", by_status["queued"])
        yield _gauge("steep_running_jobs", "Jobs training now.", by_status["running"])
        yield _gauge(
            "steep_workers_alive",
            f"Worker processes seen in the last {workers.ALIVE_SECONDS:.0f} s and not stopped.",
            alive,
        )
        yield _gauge(
            "steep_samples_per_second",
            "Training samples per second, summed over running jobs, each over its latest "
            "stored epoch.",
            sum(job.samples_per_second or 0.0 for job in running),
        )
        yield from _counter_metrics(totals)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter_metrics(totals: dict[str, int]) -> Iterator[Metric]:
    for name, counter, documentation in (
        ("steep_epochs_trained", counters.EPOCHS_TRAINED, "Epochs trained and stored."),
        (
            "steep_samples_trained",
            counters.SAMPLES_TRAINED,
            "Training samples processed in stored epochs; its rate is samples per second.",
        ),
        (
            "steep_lease_renewals",
            counters.LEASE_RENEWALS,
            "Renewals of running jobs' leases by workers.",
        ),
    ):
        yield CounterMetricFamily(name, documentation, value=totals.get(counter, 0))
    reaped = CounterMetricFamily(
        "steep_jobs_reaped",
        "Running jobs whose lease expired, by the status the reaper gave them.",
        labels=["status"],
    )
    for status in counters.REAPED_STATUSES:
        reaped.add_metric([status], totals.get(counters.jobs_reaped(status), 0))
    yield reaped


# Requests -------------------------------------------------------------------------------


class RequestMetricsMiddleware:
    """Times every HTTP request into a histogram labelled by method, route and status class.

    The route label is the route's template (``/v1/jobs/{job_id}``), read from the
    scope after routing, never the raw path. A pure ASGI middleware, so it adds only a
    few microseconds and no extra task per request. It also puts the request id that
    ``RequestIdMiddleware`` assigned in the log context, so every record logged
    while the request runs carries it. That middleware must run before this one.

    A streaming response (server-sent events) counts until its stream ends.
    """

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500  # an exception that escapes the app becomes a 500

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            with log_context(request_id=scope.get("state", {}).get("request_id")):
                await self.app(scope, receive, send_with_status)
        finally:
            self.histogram.labels(
                _method_label(scope["method"]), _route_label(scope), f"{status_code // 100}xx"
            ).observe(time.perf_counter() - started)


def _method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


# Wiring -----------------------------------------------------------------------------------


def install_metrics(app: FastAPI) -> CollectorRegistry:
    """Add ``/metrics`` and the request middleware to ``app``; return the app's registry.

    Reads the database URL from ``app.state.settings``. ``/metrics`` covers every
    tenant, so it needs an operator key wherever keys are required. Call this before
    ``app.add_middleware(RequestIdMiddleware)``: the middleware added last runs
    first, and the request id must exist before this middleware reads it.
    """
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(app.state.settings.resolved_database_url))
    histogram = Histogram(
        "steep_http_request_duration_seconds",
        "Time from the request's arrival to the end of its response, by route template.",
        ["method", "route", "status_class"],
        registry=registry,
    )
    app.add_middleware(RequestMetricsMiddleware, histogram=histogram)
    app.state.metrics_registry = registry

    @app.get(
        METRICS_PATH,
        tags=["operations"],
        summary="Service metrics in the Prometheus text format",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}},
            **problem_responses(401, 403),
        },
    )
    def metrics(request: Request, _operator: OperatorDep) -> Response:
        registry_of_app: CollectorRegistry = request.app.state.metrics_registry
        return Response(generate_latest(registry_of_app), media_type=CONTENT_TYPE_LATEST)

    return registry
