"""The exceptions of the Python client: one class per kind of error response.

Every error response of steep is an RFC 9457 problem-details body; ``error_for``
maps its status to a class, and each exception keeps the body in ``problem``.
A service that cannot be reached at all, once the client's retries are used up,
raises ``UnreachableError`` (status 0), with the httpx error as its cause.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "NotFoundError",
    "QuotaError",
    "ServerError",
    "SteepError",
    "TooLargeError",
    "UnreachableError",
    "ValidationError",
    "error_for",
]


class SteepError(Exception):
    """An error response from steep, carrying its problem details."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.detail: str = problem.get("detail") or problem.get("title") or "request failed"
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        lines = [f"{status}: {self.detail}"]
        for error in self.errors:
            location = ".".join(str(part) for part in error.get("loc", []))
            lines.append(f"  {location}: {error.get('msg')}")
        super().__init__("\n".join(lines))


class ValidationError(SteepError):
    """The request was invalid (400 or 422); ``errors`` lists each invalid field."""


class AuthenticationError(SteepError):
    """The API key was missing or not accepted (401)."""


class NotFoundError(SteepError):
    """The job, sweep or dataset does not exist, or belongs to another tenant (404)."""


class ConflictError(SteepError):
    """The resource is in the wrong state, or an idempotency key was reused (409)."""


class TooLargeError(SteepError):
    """The request or upload is larger than the server accepts (413)."""


class QuotaError(SteepError):
    """The tenant is over a quota (429)."""


class ServerError(SteepError):
    """The server failed or is unavailable (5xx), after the client's retries."""


class UnreachableError(SteepError):
    """No connection to the service: it is not running, or the URL is wrong (status 0)."""

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(
            0,
            {
                "detail": f"cannot reach steep at {base_url}: {reason}; check that the service "
                "is running (`steep serve`) and that the URL is right"
            },
        )


_ERROR_BY_STATUS: dict[int, type[SteepError]] = {
    400: ValidationError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    422: ValidationError,
    429: QuotaError,
}


def error_for(status: int, problem: dict[str, Any]) -> SteepError:
    """Return the exception for an error response with ``status`` and body ``problem``."""
    if status >= 500:
        return ServerError(status, problem)
    return _ERROR_BY_STATUS.get(status, SteepError)(status, problem)
