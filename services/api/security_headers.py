"""Security headers on every response: pages, API responses, errors and the docs.

- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and
  ``Referrer-Policy: no-referrer`` everywhere.
- ``Content-Security-Policy`` by path. The dashboard (``/`` and ``/dashboard/...``)
  may load scripts, styles, images and data from this origin only. ``/docs`` also
  allows ``data:`` images, because Swagger UI's stylesheet draws its icons with them.
  Every other response (JSON, problem details, metrics, the event stream) is not a
  page and gets ``default-src 'none'``. Every policy forbids framing with
  ``frame-ancestors 'none'``, the standard form of ``X-Frame-Options``.
- ``Cache-Control: no-store`` on ``/v1`` responses, which carry a tenant's data,
  so that no browser or proxy cache keeps a copy. It replaces the route's own
  value, such as the history's ``no-cache``: ``ETag`` and ``If-None-Match`` still
  give a 304 to clients that keep the tag themselves, as scripts do.
- ``Strict-Transport-Security`` only when the public URL is ``https``, because
  browsers ignore it over plain HTTP and a loopback service has no certificate.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.settings import Settings

__all__ = [
    "API_POLICY",
    "DASHBOARD_POLICY",
    "DOCS_POLICY",
    "SecurityHeadersMiddleware",
    "install_security_headers",
]

_NO_FRAMING_NO_PLUGINS = "base-uri 'none'; object-src 'none'; frame-ancestors 'none'"

DASHBOARD_POLICY = f"default-src 'self'; form-action 'self'; {_NO_FRAMING_NO_PLUGINS}"
DOCS_POLICY = (
    f"default-src 'self'; img-src 'self' data:; form-action 'self'; {_NO_FRAMING_NO_PLUGINS}"
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'"

HSTS_VALUE = "max-age=31536000"  # one year, in seconds

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def policy_for(path: str) -> str:
    """Return the Content-Security-Policy for a request path."""
    if path == "/" or path.startswith("/dashboard/"):
        return DASHBOARD_POLICY
    if path == "/docs" or path.startswith(("/docs/", "/docs-assets/")):
        return DOCS_POLICY
    return API_POLICY


class SecurityHeadersMiddleware:
    """Add the headers above to the start of every HTTP response."""

    def __init__(self, app: ASGIApp, *, strict_transport: bool) -> None:
        self.app = app
        self.headers = dict(COMMON_HEADERS)
        if strict_transport:
            self.headers["Strict-Transport-Security"] = HSTS_VALUE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        policy = policy_for(path)
        tenant_data = path == "/v1" or path.startswith("/v1/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
                headers["Content-Security-Policy"] = policy
                if tenant_data:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI) -> None:
    """Wrap ``app``'s whole middleware stack in ``SecurityHeadersMiddleware``.

    ``app.add_middleware`` would place it inside Starlette's ``ServerErrorMiddleware``,
    which sends the 500 response for an unhandled exception itself, so that response
    would lack the headers. Wrapping the built stack puts the headers on it too.
    Reads ``public_url`` from ``app.state.settings``.
    """
    settings: Settings = app.state.settings
    public_url = settings.public_url or ""
    strict_transport = public_url.lower().startswith("https://")
    build_stack: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_stack_with_headers() -> ASGIApp:
        return SecurityHeadersMiddleware(build_stack(), strict_transport=strict_transport)

    app.build_middleware_stack = build_stack_with_headers  # type: ignore[method-assign]
