"""Every error leaves the API here, as RFC 9457 problem details (``application/problem+json``).

Domain exceptions from ``services.errors``, request validation errors, HTTP errors
raised by routing, and unexpected exceptions are each mapped to one status. Every
body has ``type``, ``title``, ``status``, ``detail`` and ``request_id``. Validation
problems add ``errors``, with each invalid field's ``loc`` and ``msg``.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    SteepError,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from services.schemas import Problem, ProblemError

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "RequestIdMiddleware",
    "domain_error_response",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
REQUEST_ID_HEADER = "X-Request-ID"
MAX_ERRORS_IN_DETAIL = 5
MAX_VALUE_CHARS = 80

# The status of each domain exception; a subclass takes the status of its nearest base.
STATUS_BY_ERROR: dict[type[SteepError], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 422,
    TooLarge: 413,
    QuotaExceeded: 429,
    Unavailable: 503,
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries that document problem-details bodies for ``statuses``.

    ``model`` puts ``Problem`` in the document's components, but FastAPI files its schema
    under the route's own media type (``application/json``), so the entry also names the
    schema for ``application/problem+json``, the type these responses are sent with.
    """
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
            "description": HTTPStatus(status).phrase,
        }
        for status in statuses
    }


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    errors: Sequence[ProblemError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build a problem-details response; ``type`` is a URN naming the status."""
    phrase = HTTPStatus(status).phrase
    request_id = getattr(request.state, "request_id", None)
    problem = Problem(
        type="urn:steep:problem:" + phrase.lower().replace(" ", "-").replace("'", ""),
        title=phrase,
        status=status,
        detail=detail,
        errors=list(errors) if errors is not None else None,
        request_id=request_id,
    )
    response_headers = dict(headers or {})
    if request_id:
        response_headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=response_headers,
    )


# Handlers -----------------------------------------------------------------------------


def status_for(error: SteepError) -> int:
    """Return the status of the nearest class in ``STATUS_BY_ERROR``, or 400."""
    for kind in type(error).__mro__:
        if kind in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[kind]
    return 400


def domain_error_response(request: Request, error: SteepError) -> JSONResponse:
    """Build the problem response of a domain error, with the headers its status needs."""
    status = status_for(error)
    errors = None
    headers: dict[str, str] = {}
    if isinstance(error, InvalidInput):
        errors = [ProblemError(loc=list(error.loc), msg=error.message)]
    elif isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="steep"'
    elif isinstance(error, QuotaExceeded) and error.retry_after_seconds is not None:
        headers["Retry-After"] = str(error.retry_after_seconds)
    return problem_response(request, status, error.message, errors=errors, headers=headers)


async def _domain_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, SteepError)
    return domain_error_response(request, error)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = []
    seen: set[tuple[str | int, ...]] = set()
    for item in error.errors():
        loc = strip_union_tags(item.get("loc", ()), error.body)
        # An untagged union reports one error per member at the same place; one is enough.
        if tuple(loc) in seen:
            continue
        seen.add(tuple(loc))
        errors.append(ProblemError(loc=loc, msg=describe_validation_error({**item, "loc": loc})))
    sentences = [entry.msg for entry in errors[:MAX_ERRORS_IN_DETAIL]]
    if len(errors) > MAX_ERRORS_IN_DETAIL:
        sentences.append(f"and {len(errors) - MAX_ERRORS_IN_DETAIL} more errors")
    return problem_response(request, 422, "; ".join(sentences), errors=errors)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail
    if error.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
        detail = f"no endpoint matches {request.method} {request.url.path}"
    elif error.status_code == 405:
        detail = f"{request.url.path} does not accept {request.method}"
    elif error.status_code == 400 and isinstance(error.__cause__, UnicodeDecodeError):
        # FastAPI returns a bare "error parsing the body" for a JSON body it cannot decode.
        cause = error.__cause__
        detail = (
            f"the request body is not valid UTF-8 ({cause.reason} at byte {cause.start}); "
            "send JSON encoded as UTF-8"
        )
    return problem_response(request, error.status_code, str(detail), headers=error.headers)


async def _not_implemented(request: Request, error: Exception) -> JSONResponse:
    return problem_response(request, 501, str(error))


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    logger.error(
        "unhandled error in %s %s (request %s)",
        request.method,
        request.url.path,
        request_id,
        exc_info=error,
    )
    return problem_response(
        request,
        500,
        "the server failed to process the request; report the request id if this persists",
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error of ``app`` through the handlers above."""
    app.add_exception_handler(SteepError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(NotImplementedError, _not_implemented)
    app.add_exception_handler(Exception, _unexpected_error)


# Validation messages ------------------------------------------------------------------


def describe_validation_error(item: dict[str, Any]) -> str:
    """Turn one pydantic error into a sentence naming the field, the rule and the value.

    >>> describe_validation_error(
    ...     {"loc": ("body", "model", "layers", 0, "units"), "type": "less_than_equal",
    ...      "msg": "Input should be less than or equal to 65536", "input": 10**9})
    'model.layers[0].units: Input should be less than or equal to 65536, got 1000000000'
    """
    field = format_location(item.get("loc", ()))
    message = str(item.get("msg", "invalid value"))
    kind = item.get("type", "")
    if kind == "missing":
        return f"{field}: field required"
    if kind == "extra_forbidden":
        return f"{field}: unknown field; remove it or correct its spelling"
    if kind == "json_invalid":
        reason = item.get("ctx", {}).get("error", "")
        position = item["loc"][-1] if item.get("loc") else "?"
        return f"the request body is not valid JSON: {reason} at character {position}"
    if kind == "value_error":
        # Messages of steep's own validators already show the offending value.
        return f"{field}: {message.removeprefix('Value error, ')}"
    if kind == "union_tag_not_found":
        return f"{field}.type: field required; it selects which kind of {field} this is"
    if kind == "union_tag_invalid" or "input" not in item:
        return f"{field}: {message}"
    if isinstance(item["input"], bytes):
        # FastAPI hands over the raw body when the Content-Type is not JSON.
        return (
            f"{field}: {message}; the body was not read as JSON, so send it with "
            "'Content-Type: application/json'"
        )
    if ", got " in message:
        return f"{field}: {message} ({_short_repr(item['input'])})"
    return f"{field}: {message}, got {_short_repr(item['input'])}"


def strip_union_tags(loc: Sequence[Any], body: Any) -> list[str | int]:
    """Drop the tags pydantic adds to a location inside a tagged union.

    Pydantic reports an error in ``{"type": "dense", "units": -3}`` at
    ``("body", "layers", 0, "dense", "units")``, but the client's JSON has no key
    "dense". Walking the body finds such parts: a part that is not a key of the
    object at that point but equals its ``type``. Members of untagged unions appear
    as labels such as ``list[float]`` or ``str``; those are dropped too.
    """
    parts = list(loc)
    if not parts or parts[0] != "body":
        return parts
    cleaned: list[str | int] = ["body"]
    node = body
    for part in parts[1:]:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        if isinstance(part, str) and _is_union_label(part, node):
            continue
        cleaned.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return cleaned


_TYPE_LABELS = frozenset({"float", "int", "str", "bool", "bytes", "list", "dict", "none"})


def _is_union_label(part: str, node: Any) -> bool:
    """Tell whether ``part`` names a union member rather than a key of ``node``."""
    if isinstance(node, dict) and part in node:
        return False
    return "[" in part or part in _TYPE_LABELS or not isinstance(node, dict)


def format_location(loc: Sequence[Any]) -> str:
    """Format a pydantic location as a path, e.g. ``("body", "layers", 0, "units")`` as
    ``layers[0].units``. Query and header parameters keep their source as a prefix."""
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
    return prefix + (path or "request body")


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    return text


# Request ids --------------------------------------------------------------------------


class RequestIdMiddleware:
    """Give every request an id (the client's ``X-Request-ID`` when it is a plain token)
    and echo it in the response headers, so a logged error can be found from a response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or _next_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


# Request ids need to be unique, not secret: a random prefix per process and a counter
# cost less than a uuid4 (16 bytes from the kernel) per request.
_PROCESS_PREFIX = secrets.token_hex(6)
_request_numbers = itertools.count(1)


def _next_request_id() -> str:
    return f"{_PROCESS_PREFIX}{next(_request_numbers):012x}"


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if 0 < len(text) <= 100 and all(c.isalnum() or c in "-_.:" for c in text):
                return text
    return None
