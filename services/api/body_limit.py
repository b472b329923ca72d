"""Reject request bodies above the server's size limits with a 413, as a pure ASGI middleware.

A body is limited to ``max_request_bytes``, except a dataset upload
(``POST /v1/datasets``), which may be ``max_upload_bytes`` plus the multipart form's
overhead (``services.api.upload_form`` checks the file part itself). A
``Content-Length`` above the limit gets the 413 before the application runs. A
body without one (chunked) is counted as it streams, and the read that passes the
limit raises a 413 ``HTTPException``: FastAPI passes it on from the body parser,
and the problem-details handler turns it into the response. If the application still starts
another response after the body was cut off, this middleware sends the 413 instead.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.problems import problem_response
from services.api.upload_form import FORM_OVERHEAD_BYTES
from services.settings import Settings

__all__ = ["BodyLimitMiddleware", "install_body_limit"]

UPLOAD_PATH = "/v1/datasets"


class BodyLimitMiddleware:
    """Respond 413 to a request whose body is larger than the limit for its route."""

    def __init__(self, app: ASGIApp, *, max_request_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _BodyLimit.for_request(scope, self.max_request_bytes, self.max_upload_bytes)
        length = _content_length(scope)
        if length is not None and length > limit.max_bytes:
            await _send_too_large(scope, receive, send, limit.message(length))
            return
        await _LimitedRequest(self.app, limit, scope, receive, send).run()


def install_body_limit(app: FastAPI) -> None:
    """Add ``BodyLimitMiddleware`` to ``app`` with the limits of ``app.state.settings``."""
    settings: Settings = app.state.settings
    app.add_middleware(
        BodyLimitMiddleware,
        max_request_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )


class _BodyLimit:
    """The byte limit of one request's body, and the sentence that explains it."""

    def __init__(self, max_bytes: int, upload: bool) -> None:
        self.max_bytes = max_bytes
        self.upload = upload

    @classmethod
    def for_request(cls, scope: Scope, max_request_bytes: int, max_upload_bytes: int) -> _BodyLimit:
        path = scope["path"].rstrip("/") or "/"
        if scope["method"] == "POST" and path == UPLOAD_PATH:
            return cls(max_upload_bytes + FORM_OVERHEAD_BYTES, upload=True)
        return cls(max_request_bytes, upload=False)

    def message(self, length: int | None) -> str:
        # A streamed body has no declared length; the count stops where it passes the limit.
        size = f"is {length:,} bytes, above" if length is not None else "grew, as it streamed, past"
        if self.upload:
            return (
                f"the request body {size} this server's upload limit of "
                f"{self.max_bytes - FORM_OVERHEAD_BYTES:,} bytes for the file plus "
                f"{FORM_OVERHEAD_BYTES:,} bytes for the form (STEEP_MAX_UPLOAD_BYTES); "
                "upload a smaller file"
            )
        return (
            f"the request body {size} this server's limit of {self.max_bytes:,} "
            "bytes (STEEP_MAX_REQUEST_BYTES); send a smaller body, and upload data with "
            "POST /v1/datasets instead of putting it in a request"
        )


class _LimitedRequest:
    """One request whose body is counted as the application reads it."""

    def __init__(
        self, app: ASGIApp, limit: _BodyLimit, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.app = app
        self.limit = limit
        self.scope = scope
        self.receive = receive
        self.send = send
        self.received = 0
        self.exceeded = False
        self.response_started = False
        self.replaced = False

    async def run(self) -> None:
        try:
            await self.app(self.scope, self.receive_counted, self.send_unless_exceeded)
        except Exception:
            # Whatever the application raised after the body was cut off, the client
            # gets the 413 when no response has started yet.
            if not self.exceeded or self.response_started:
                raise
            await self._send_413()

    async def receive_counted(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit.max_bytes:
                self.exceeded = True
                raise HTTPException(413, self.limit.message(None))
        return message

    async def send_unless_exceeded(self, message: Message) -> None:
        if self.replaced:
            return
        if message["type"] == "http.response.start":
            if self.exceeded and message["status"] != 413:
                await self._send_413()
                return
            self.response_started = True
        await self.send(message)

    async def _send_413(self) -> None:
        self.replaced = True
        self.response_started = True
        await _send_too_large(self.scope, self.receive, self.send, self.limit.message(None))


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.isdigit():
        return None
    return int(value)


async def _send_too_large(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
    response = problem_response(Request(scope), 413, detail)
    await response(scope, receive, send)
