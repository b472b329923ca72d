"""Domain exceptions of the service layer.

Service functions raise these. The API maps each class to one HTTP status and a
problem-details body in ``services.api.problems``, and nothing else decides a status.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "QuotaExceeded",
    "SteepError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
]

Location = tuple[str | int, ...]


class SteepError(Exception):
    """Base class of every domain error; the message is shown to the client as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(SteepError):
    """The request carries no API key, or one that is unknown or revoked."""


class Forbidden(SteepError):
    """The key is valid but may not do this (a tenant key asking for service-wide data)."""


class NotFound(SteepError):
    """The resource does not exist, or it belongs to another tenant."""


class Conflict(SteepError):
    """The resource is in the wrong state for the request, or an idempotency key is reused."""


class InvalidInput(SteepError):
    """A request value breaks a rule that needs the database or the data to check.

    ``loc`` is the path of the offending field, as in a pydantic error
    (``("body", "model", "layers", 1, "units")``), so the client can point at it.
    """

    def __init__(self, message: str, loc: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.loc: Location = tuple(loc)


class TooLarge(SteepError):
    """A request body or an upload is larger than the server accepts."""


class QuotaExceeded(SteepError):
    """The tenant already has as much work in the service as its quota allows.

    ``retry_after_seconds``, when given, is the time after which a retry may succeed.
    """

    def __init__(self, message: str, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(SteepError):
    """A backing service (the database or the broker) cannot be reached."""
