"""Every error leaves the API here, as RFC 9457 problem details (``application/problem+json``).

Domain exceptions from ``services.errors``, request validation errors, HTTP errors
raised by routing, and unexpected exceptions are each mapped to one status. Every
body has ``type``, ``title``, ``status``, ``detail`` and ``request_id``. Validation
problems add ``errors``, with each invalid field's ``loc`` and ``msg``.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    located = [locate_validation_error(item, error.body) for item in error.errors()]
    body_schema = _body_schema_name(request)
    errors = [
        ProblemError(loc=entry.loc, msg=describe_validation_error(entry.item, body_schema))
        for entry in merge_union_errors(located)
    ]
    sentences = [entry.msg for entry in errors[:MAX_ERRORS_IN_DETAIL]]
    if len(errors) > MAX_ERRORS_IN_DETAIL:
        sentences.append(f"and {len(errors) - MAX_ERRORS_IN_DETAIL} more errors")
    return problem_response(request, 422, "; ".join(sentences), errors=errors)


def _body_schema_name(request: Request) -> str | None:
    """Return the name of the matched route's JSON body schema, as /openapi.json lists it."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(body_field, "field_info", None), "annotation", None)
    return annotation.__name__ if isinstance(annotation, type) else None


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

# A union's position in the cleaned location, and the label or tag of one of its members.
UnionMember = tuple[tuple[str | int, ...], str]

DISCRIMINATOR_KEY = re.compile(r"^'(\w+)'$")

# Pydantic's error types for a JSON body that is no object: model_attributes_type for
# a model body, dict_type for a dict body.
BODY_NOT_OBJECT = ("model_attributes_type", "dict_type")


@dataclass(frozen=True)
class LocatedError:
    """One pydantic error, with its location rewritten in the client's keys.

    ``item`` is the pydantic error with ``loc`` replaced. ``members`` lists the union
    members that the raw location passed through, innermost last.
    """

    item: dict[str, Any]
    members: tuple[UnionMember, ...]

    @property
    def loc(self) -> list[str | int]:
        return list(self.item["loc"])

    @property
    def rejected_member(self) -> UnionMember | None:
        """The union member whose only error is a type mismatch at the union itself, if any."""
        if not self.members or not str(self.item.get("type", "")).endswith("_type"):
            return None
        position, label = self.members[-1]
        return (position, label) if position == tuple(self.loc) else None


def locate_validation_error(item: dict[str, Any], body: Any) -> LocatedError:
    """Rewrite the location of one pydantic error in the keys of the client's body.

    Union tags and member labels leave the location. An unknown or missing union tag
    is placed at its key (``optimizer.type``) when the client sent an object there.
    """
    kind = item.get("type", "")
    loc, members, node = _walk_location(item.get("loc", ()), body, missing=kind == "missing")
    item = {**item, "loc": loc}
    if kind in ("union_tag_invalid", "union_tag_not_found") and isinstance(node, dict):
        key = DISCRIMINATOR_KEY.match(str(item.get("ctx", {}).get("discriminator", "")))
        if key:
            item["loc"] = [*loc, key.group(1)]
            item["input"] = node.get(key.group(1))
    return LocatedError(item, tuple(members))


def merge_union_errors(errors: Sequence[LocatedError]) -> list[LocatedError]:
    """Keep one error per location, without the noise of unions' other members.

    Pydantic validates an input against every member of an untagged union and reports
    each member's errors. A member that rejected the input's type is dropped when
    another member accepted the type, so a list row gets no error about not being an
    object. When every member rejected the type, their errors become one sentence.
    """
    accepted = {
        member for error in errors for member in error.members if member != error.rejected_member
    }

    def is_noise(error: LocatedError) -> bool:
        rejected = error.rejected_member
        return rejected is not None and any(
            position == rejected[0] and label != rejected[1] for position, label in accepted
        )

    relevant = [error for error in errors if not is_noise(error)]
    by_location: dict[tuple[str | int, ...], list[LocatedError]] = {}
    for error in relevant:
        by_location.setdefault(tuple(error.loc), []).append(error)
    return [_merge_rejections(group) for group in by_location.values()]


def _merge_rejections(group: list[LocatedError]) -> LocatedError:
    """Join the members' type rejections at one place into one message, or keep the first error."""
    first = group[0]
    if len(group) == 1 or any(error.rejected_member is None for error in group):
        return first
    messages = list(dict.fromkeys(str(error.item.get("msg", "")) for error in group))
    joined = messages[0] + "".join(
        " or " + message.removeprefix("Input should be ") for message in messages[1:]
    )
    return LocatedError({**first.item, "msg": joined}, first.members)


def describe_validation_error(item: dict[str, Any], body_schema: str | None = None) -> str:
    """Turn one pydantic error into a sentence naming the field, the rule and the value.

    ``body_schema`` names the schema of the route's JSON body, for the error of a
    missing body.

    >>> describe_validation_error(
    ...     {"loc": ("body", "model", "layers", 0, "units"), "type": "less_than_equal",
    ...      "msg": "Input should be less than or equal to 65536", "input": 10**9})
    'model.layers[0].units: Input should be less than or equal to 65536, got 1000000000'
    """
    loc = item.get("loc", ())
    field = format_location(loc)
    message = str(item.get("msg", "invalid value"))
    kind = item.get("type", "")
    ctx = item.get("ctx") or {}
    if kind == "missing":
        if list(loc) == ["body"]:
            return _describe_missing_body(body_schema)
        return f"{field}: missing; this field is required"
    if (
        kind in BODY_NOT_OBJECT
        and list(loc) == ["body"]
        and not isinstance(item.get("input"), bytes)
    ):
        return _describe_body_not_object(body_schema, item.get("input"))
    if kind == "extra_forbidden":
        return f"{field}: unknown field; remove it or correct its spelling"
    if kind == "json_invalid":
        reason = ctx.get("error", "")
        position = item["loc"][-1] if item.get("loc") else "?"
        return f"the request body is not valid JSON: {reason} at character {position}"
    if kind == "value_error":
        # Messages of steep's own validators already show the offending value.
        return f"{field}: {message.removeprefix('Value error, ')}"
    if kind == "union_tag_not_found":
        key = DISCRIMINATOR_KEY.match(str(ctx.get("discriminator", "")))
        if key and loc and loc[-1] == key.group(1):
            parent = format_location(loc[:-1])
            return f"{field}: missing; it selects which kind of {parent} this is"
        return f"{field}: missing; it selects which kind of {field} this is"
    if kind == "union_tag_invalid":
        return _describe_unknown_tag(item, field, ctx)
    if kind in ("too_short", "too_long") and "actual_length" in ctx:
        return _describe_length(loc, field, kind, ctx)
    if "input" not in item:
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


def _describe_missing_body(body_schema: str | None) -> str:
    return (
        f"the request body is missing; send {_expected_body(body_schema)} with "
        "'Content-Type: application/json'"
    )


def _describe_body_not_object(body_schema: str | None, body: Any) -> str:
    return f"the request body must be {_expected_body(body_schema)}, got {_short_repr(body)}"


def _expected_body(body_schema: str | None) -> str:
    expected = f"a JSON object of the {body_schema} schema" if body_schema else "a JSON object"
    return f"{expected} (see /openapi.json)"


def _describe_unknown_tag(item: dict[str, Any], field: str, ctx: Mapping[str, Any]) -> str:
    """Describe a union tag that matches no member, e.g. ``optimizer.type`` set to "lbfgs".

    The noun is the object's field name for a ``type`` key ("unknown optimizer") and
    the key itself otherwise ("unknown distribution"). The expected tags come from
    the schema through pydantic's error context.
    """
    loc = list(item.get("loc", ()))
    key = DISCRIMINATOR_KEY.match(str(ctx.get("discriminator", "")))
    names = [part for part in loc if isinstance(part, str) and part != "body"]
    if key and names and names[-1] == key.group(1):
        # The location ends at the tag's key, so the object's field is the part before it.
        object_name = loc[-2] if len(loc) >= 2 else None
        noun = key.group(1)
        if noun == "type" and isinstance(object_name, str) and object_name != "body":
            noun = object_name.replace("_", " ")
    else:
        noun = names[-1].replace("_", " ") if names else "type"
    value = item.get("input")
    tag = _short_repr(value) if not isinstance(value, dict) else repr(ctx.get("tag"))
    return f"{field}: unknown {noun} {tag}; expected one of {ctx.get('expected_tags', '?')}"


def _describe_length(loc: Sequence[Any], field: str, kind: str, ctx: Mapping[str, Any]) -> str:
    """Describe a list or object with too few or too many items, counting in its own noun."""
    if kind == "too_short":
        bound, limit = "needs at least", ctx.get("min_length")
    else:
        bound, limit = "takes at most", ctx.get("max_length")
    actual = ctx["actual_length"]
    return f"{field}: {bound} {limit} {_item_noun(loc, limit)}, got {actual or 'none'}"


def _item_noun(loc: Sequence[Any], count: Any) -> str:
    """Name the items of the collection at ``loc``: ``layers`` contains layers, one layer.

    A field name that is no plural in ``s`` falls back to "item" and "items".
    """
    names = [part for part in loc if isinstance(part, str) and part != "body"]
    name = names[-1] if names else ""
    if not (name.endswith("s") and name[:-1].isidentifier()):
        return "item" if count == 1 else "items"
    plural = name.replace("_", " ")
    return plural[:-1] if count == 1 else plural


def _walk_location(
    loc: Sequence[Any], body: Any, *, missing: bool
) -> tuple[list[str | int], list[UnionMember], Any]:
    """Split a body location into the client's keys and the union members it passes.

    Pydantic reports an error in ``{"type": "dense", "units": -3}`` at
    ``("body", "layers", 0, "dense", "units")``, but the client's JSON has no key
    "dense". At an object, a part that is not one of its keys is a union tag (``dense``, or
    ``choice`` for a tag that a default supplies) or a member label such as
    ``list[float]``. The one exception is the last part of a ``missing`` error, the
    key the client left out. At a list or a value, every string part is a label.
    Returns the cleaned location, the members, and the body's value at the location.
    """
    parts = list(loc)
    if not parts or parts[0] != "body":
        return parts, [], None
    cleaned: list[str | int] = ["body"]
    members: list[UnionMember] = []
    node = body
    for index, part in enumerate(parts[1:], start=1):
        if isinstance(node, dict):
            is_key = part in node or (missing and index == len(parts) - 1)
        else:
            is_key = isinstance(part, int)
        if not is_key:
            members.append((tuple(cleaned), str(part)))
            continue
        cleaned.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return cleaned, members, node


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
