"""Authenticate every ``/v1`` and ``/metrics`` request before the application reads it.

A pure ASGI middleware resolves the ``Authorization: Bearer`` header to a
``Principal`` and puts it in the request state, where ``deps.current_principal``
finds it. Doing this ahead of routing means a request without a valid key gets
its 401 before its body is read or parsed, so a malformed body from an
unauthenticated client is a 401, not a 422.

A key found valid is reused for ``key_cache_seconds`` (``KeyCache``) before it is
looked up again, so a revoked key stops working within that time.

Without a header, the request belongs to the tenant ``local`` when the settings
allow it (embedded mode on loopback, see ``Settings.keys_required``), and is a 401
otherwise. A header that is present is always checked, so a wrong key is a 401 in
every mode.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.problems import domain_error_response
from services.errors import Unauthorized
from services.keys import LOCAL_TENANT, Principal, authenticate, hash_secret
from services.settings import Settings

__all__ = [
    "LOCAL_PRINCIPAL",
    "AuthMiddleware",
    "KeyCache",
    "install_auth",
    "needs_principal",
    "resolve_principal",
]

logger = logging.getLogger(__name__)

LOCAL_PRINCIPAL = Principal(tenant=LOCAL_TENANT, operator=True, key_id=None)
# Paths whose requests act for a tenant or read service-wide data.
PROTECTED_PREFIXES = ("/v1/", "/metrics")


def needs_principal(path: str) -> bool:
    return path == "/v1" or path.startswith(PROTECTED_PREFIXES)


def resolve_principal(settings: Settings, header: str | None) -> Principal:
    """Return who a request with this ``Authorization`` header acts for.

    Looks the key up in the database, so call it off the event loop.

    Raises:
        Unauthorized: no key where one is required, a header that is not
            ``Bearer <key>``, or a key that is unknown or revoked.
    """
    if header is None:
        if settings.keys_required:
            raise Unauthorized(
                "this request needs an API key: send 'Authorization: Bearer <key>'; an "
                "operator creates keys with `steep keys create --tenant NAME`"
            )
        return LOCAL_PRINCIPAL
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized(
            "the Authorization header must be 'Bearer <key>' with an API key from "
            "`steep keys create`"
        )
    principal = authenticate(settings, secret.strip())
    if principal is None:
        raise Unauthorized(
            "the API key in the Authorization header is unknown or revoked; ask the "
            "operator for a valid key (`steep keys create --tenant NAME`)"
        )
    return principal


class KeyCache:
    """Principals of keys found valid in the last ``seconds``, by the key's SHA-256.

    Only valid keys are kept, so a new key works at once and a revoked one stops
    working within ``seconds``. At ``max_entries`` the cache starts over.
    """

    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, header: str) -> Principal | None:
        entry = self._entries.get(hash_secret(header))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, header: str, principal: Principal) -> None:
        if self.seconds <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[hash_secret(header)] = (principal, time.monotonic() + self.seconds)


class AuthMiddleware:
    """Put the request's ``Principal`` in ``scope["state"]``, or respond with a 401."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.cache = KeyCache(settings.key_cache_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_principal(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        try:
            if header is None:
                principal = resolve_principal(self.settings, None)  # no database read
            elif (cached := self.cache.get(header)) is not None:
                principal = cached
            else:
                principal = await run_in_threadpool(resolve_principal, self.settings, header)
                self.cache.put(header, principal)
        except Unauthorized as error:
            request = Request(scope)
            logger.info(
                "rejected %s %s with 401 (request %s): %s",
                scope["method"],
                scope["path"],
                getattr(request.state, "request_id", None),
                error.message.partition(";")[0],
            )
            await domain_error_response(request, error)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def install_auth(app: FastAPI) -> None:
    """Add ``AuthMiddleware`` to ``app`` with the settings of ``app.state.settings``."""
    app.add_middleware(AuthMiddleware, settings=app.state.settings)
