"""The FastAPI application: ``create_app`` wires the routers, the error mapping and the state."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI

from services.api.auth import install_auth
from services.api.body_limit import install_body_limit
from services.api.deps import current_principal
from services.api.metrics import install_metrics
from services.api.problems import RequestIdMiddleware, install_problem_handlers, problem_responses
from services.api.routes import dashboard, datasets, experiments, health, jobs, sweeps
from services.api.routes.docs import install_docs
from services.api.security_headers import install_security_headers
from services.settings import Settings, get_settings
from services.worker.enqueue import enqueue_job

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

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
    install_auth(app)
    install_body_limit(app)
    install_metrics(app)
    app.add_middleware(RequestIdMiddleware)
    # Every /v1 route needs a key, or the keyless local mode. FastAPI runs a dependency
    # once per request, so routes that also ask for the tenant reuse the principal.
    for router in (jobs.router, datasets.router, sweeps.router, experiments.router):
        app.include_router(
            router, dependencies=[Depends(current_principal)], responses=problem_responses(401)
        )
    app.include_router(health.router)
    app.include_router(dashboard.router)
    install_docs(app)
    install_security_headers(app)
    _log_auth_mode(app.state.settings)
    return app


def _log_auth_mode(settings: Settings) -> None:
    if settings.keys_required:
        logger.info(
            "API keys are required on every /v1 and /metrics request (steep keys create), "
            "and /metrics takes only operator keys (steep keys create --operator)"
        )
    else:
        logger.info(
            "no API key needed: embedded mode on loopback (%s), requests without a key "
            "belong to the tenant 'local'",
            settings.host,
        )
