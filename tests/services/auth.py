"""Test clients that send an API key, so the same requests run in both modes.

Distributed mode always needs a key; embedded mode on loopback takes requests
without one as the tenant ``local``. Tests that are not about keys act as
``local`` with the key the ``configure`` fixture created (``settings.api_key``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.keys import LOCAL_TENANT, create_key
from services.settings import Settings

__all__ = ["bearer", "client_for", "tenant_key"]


def tenant_key(settings: Settings, tenant: str = LOCAL_TENANT, **options: Any) -> str:
    """Create a key of ``tenant`` in the settings' database and return its secret."""
    return create_key(settings, tenant, **options).secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def client_for(app: FastAPI, tenant: str = LOCAL_TENANT, **options: Any) -> TestClient:
    """A test client of ``app`` that acts as ``tenant``: with the settings' key for
    ``local``, and with a new key for any other tenant."""
    settings: Settings = app.state.settings
    if tenant == LOCAL_TENANT and settings.api_key is not None:
        secret = settings.api_key.get_secret_value()
    else:
        secret = tenant_key(settings, tenant)
    return TestClient(app, headers=bearer(secret), **options)
