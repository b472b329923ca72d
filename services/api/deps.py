"""Dependencies the route handlers share: the settings, who is asking, and the enqueue function.

They are ``async def`` because none of them blocks: FastAPI runs a plain ``def``
dependency in a worker thread, and each such handoff cost more than the work.

``AuthMiddleware`` (``services.api.auth``) resolves the API key of every ``/v1``
and ``/metrics`` request before routing. ``current_principal`` returns the
principal it found, and declares the bearer scheme in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from services.api.auth import resolve_principal
from services.errors import Forbidden
from services.jobs import Enqueue
from services.keys import Principal
from services.settings import Settings

__all__ = [
    "EnqueueDep",
    "OperatorDep",
    "PrincipalDep",
    "SettingsDep",
    "TenantDep",
    "app_settings",
    "current_principal",
    "current_tenant",
    "enqueue",
    "require_operator",
]

# Declares the scheme in the OpenAPI document (and the "Authorize" button of /docs);
# AuthMiddleware reads the header itself, to tell a missing key from a malformed one.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key from `steep keys create --tenant NAME`.",
)


async def app_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def current_principal(
    request: Request,
    settings: Annotated[Settings, Depends(app_settings)],
    _scheme: Annotated[object, Depends(bearer_scheme)] = None,
) -> Principal:
    """Return who the request acts for, as ``AuthMiddleware`` resolved it.

    Raises:
        Unauthorized: the route lies outside the middleware's paths and the request
            has no valid key where one is required.
    """
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        header = request.headers.get("authorization")
        principal = await run_in_threadpool(resolve_principal, settings, header)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def current_tenant(principal: PrincipalDep) -> str:
    """Return the tenant of the request."""
    return principal.tenant


async def require_operator(principal: PrincipalDep) -> Principal:
    """Return the principal if it may read service-wide data.

    Raises:
        Forbidden: the key belongs to a tenant, not to an operator.
    """
    if not principal.operator:
        raise Forbidden(
            "this endpoint shows every tenant's activity and needs an operator key "
            "(`steep keys create --tenant NAME --operator`)"
        )
    return principal


async def enqueue(request: Request) -> Enqueue:
    """Return the function that sends a job's run message to the workers."""
    send: Enqueue = request.app.state.enqueue
    return send


SettingsDep = Annotated[Settings, Depends(app_settings)]
TenantDep = Annotated[str, Depends(current_tenant)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
EnqueueDep = Annotated[Enqueue, Depends(enqueue)]
