"""The FastAPI application: ``create_app`` wires the routers, the error mapping and the state."""

from __future__ import annotations

from fastapi import FastAPI

from services.api.problems import RequestIdMiddleware, install_problem_handlers
from services.api.routes import dashboard, datasets, experiments, health, jobs, sweeps
from services.api.routes.docs import install_docs
from services.settings import Settings, get_settings
from services.worker.enqueue import enqueue_job

__all__ = ["create_app"]

DESCRIPTION = """\
Training as a service: submit a job spec and a dataset, and steep trains the network
with its own NumPy backpropagation engine on a pool of workers, records every epoch,
and serves the trained parameters. Errors are RFC 9457 problem details.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: the process's settings).

    The database must already be migrated (``services.store.migrate.upgrade``).

    NOTE: jobs are enqueued with ``enqueue_job``, which publishes to the broker of the
    process's settings, not to ``settings.broker_url``. Pass settings that agree with
    the environment, or replace ``app.state.enqueue``.
    """
    app = FastAPI(
        title="steep",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,  # served by routes.docs without a CDN
        redoc_url=None,  # ReDoc has no offline build in a Python package
    )
    app.state.settings = settings or get_settings()
    app.state.enqueue = enqueue_job
    install_problem_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(sweeps.router)
    app.include_router(experiments.router)
    app.include_router(health.router)
    app.include_router(dashboard.router)
    install_docs(app)
    return app
