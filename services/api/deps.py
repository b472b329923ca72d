"""Dependencies the route handlers share: the settings, the tenant and the enqueue function."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.jobs import Enqueue
from services.settings import Settings

__all__ = ["EnqueueDep", "SettingsDep", "TenantDep", "app_settings", "current_tenant", "enqueue"]


def app_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def current_tenant() -> str:
    """Return the tenant of the request.

    TODO: every request belongs to the tenant "local" until API keys exist. Then this
    reads the Authorization header and maps the key to its tenant, with 401 without one.
    """
    return "local"


def enqueue(request: Request) -> Enqueue:
    """Return the function that sends a job's run message to the workers."""
    send: Enqueue = request.app.state.enqueue
    return send


SettingsDep = Annotated[Settings, Depends(app_settings)]
TenantDep = Annotated[str, Depends(current_tenant)]
EnqueueDep = Annotated[Enqueue, Depends(enqueue)]
