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
        super().__init__(_format_message(status, self.detail, self.errors))


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


def _format_message(status: int, detail: str, errors: list[dict[str, Any]]) -> str:
    """Format the text of a ``SteepError`` as the status followed by the detail or the errors.

    The detail of a 422 joins the first few of its ``errors``, so the message lists
    the errors in place of the detail, each once. Status 0 means that no HTTP
    response arrived, so it gets no prefix.
    """
    prefix = f"{status}: " if status else ""
    if not errors:
        return f"{prefix}{detail}"
    sentences = [_describe_error(error) for error in errors]
    if len(sentences) == 1:
        return f"{prefix}{sentences[0]}"
    lines = [f"{prefix}{len(sentences)} errors in the request:"]
    lines += [f"  {sentence}" for sentence in sentences]
    return "\n".join(lines)


def _describe_error(error: dict[str, Any]) -> str:
    """Return an entry of a problem's ``errors`` as "location: message".

    steep's messages already start with the location, written as in the spec
    (``model.layers[0].units``), so the location is added only when the message
    does not contain it.
    """
    message = str(error.get("msg") or "invalid value")
    location = _format_location(error.get("loc") or [])
    if not location or location in message:
        return message
    return f"{location}: {message}"


def _format_location(loc: list[Any]) -> str:
    """Format a location as steep's messages write it, like ``format_location`` in
    ``services.api.problems``, which the client does not import because it is server code.

    ``["body", "layers", 0, "units"]`` becomes ``layers[0].units``, and
    ``["query", "limit"]`` becomes ``query parameter limit``.
    """
    parts = list(loc)
    prefix = ""
    if parts and parts[0] == "body":
        parts = parts[1:]
    elif parts and parts[0] in ("query", "header", "path"):
        prefix = f"{parts[0]} parameter "
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = str(part)
    return prefix + path


def error_for(status: int, problem: dict[str, Any]) -> SteepError:
    """Return the exception for an error response with ``status`` and body ``problem``."""
    if status >= 500:
        return ServerError(status, problem)
    return _ERROR_BY_STATUS.get(status, SteepError)(status, problem)
