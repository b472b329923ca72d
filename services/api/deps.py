"""Dependencies the route handlers share: the settings, who is asking, and the enqueue function.

Every ``/v1`` route depends on ``current_principal``: the API key in the
``Authorization: Bearer`` header decides the tenant. Without a header, the request
belongs to the tenant ``local`` when the settings allow it (embedded mode on
loopback, see ``Settings.keys_required``), and is a 401 otherwise. A header that
is present is always checked, so a wrong key is a 401 in every mode.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from services.errors import Forbidden, Unauthorized
from services.jobs import Enqueue
from services.keys import LOCAL_TENANT, Principal, authenticate
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
# current_principal reads the header itself, to tell a missing key from a malformed one.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key from `steep keys create --tenant NAME`.",
)

logger = logging.getLogger(__name__)

LOCAL_PRINCIPAL = Principal(tenant=LOCAL_TENANT, operator=True, key_id=None)


def app_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def current_principal(
    request: Request,
    settings: Annotated[Settings, Depends(app_settings)],
    _scheme: Annotated[object, Depends(bearer_scheme)] = None,
) -> Principal:
    """Return who the request acts for, from its API key.

    Raises:
        Unauthorized: no key where one is required, a header that is not
            ``Bearer <key>``, or a key that is unknown or revoked.
    """
    header = request.headers.get("authorization")
    if header is None:
        if settings.keys_required:
            _log_rejection(request, "no Authorization header")
            raise Unauthorized(
                "this request needs an API key: send 'Authorization: Bearer <key>'; an "
                "operator creates keys with `steep keys create --tenant NAME`"
            )
        return LOCAL_PRINCIPAL
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        _log_rejection(request, "an Authorization header that is not 'Bearer <key>'")
        raise Unauthorized(
            "the Authorization header must be 'Bearer <key>' with an API key from "
            "`steep keys create`"
        )
    principal = authenticate(settings, secret.strip())
    if principal is None:
        _log_rejection(request, "an unknown or revoked key")
        raise Unauthorized(
            "the API key in the Authorization header is unknown or revoked; ask the "
            "operator for a valid key (`steep keys create --tenant NAME`)"
        )
    return principal


def _log_rejection(request: Request, reason: str) -> None:
    """Log a 401 with the path and the request id, never with the header's value."""
    logger.info(
        "rejected %s %s with 401: %s (request %s)",
        request.method,
        request.url.path,
        reason,
        getattr(request.state, "request_id", None),
    )


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def current_tenant(principal: PrincipalDep) -> str:
    """Return the tenant of the request."""
    return principal.tenant


def require_operator(principal: PrincipalDep) -> Principal:
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


def enqueue(request: Request) -> Enqueue:
    """Return the function that sends a job's run message to the workers."""
    send: Enqueue = request.app.state.enqueue
    return send


SettingsDep = Annotated[Settings, Depends(app_settings)]
TenantDep = Annotated[str, Depends(current_tenant)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
EnqueueDep = Annotated[Enqueue, Depends(enqueue)]
