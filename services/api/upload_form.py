"""Receive a multipart dataset upload from the request stream, within the size limit.

Starlette's ``MultiPartParser`` (Starlette 1.10) writes a file part into a
``SpooledTemporaryFile`` that keeps 1 MiB in memory and moves to a temporary file
on disk beyond that. Its ``max_part_size`` bounds only the parts that are not
files, so the request stream is wrapped to count bytes and stop reading once the
body exceeds the upload limit plus ``FORM_OVERHEAD_BYTES`` for the boundaries and
the other fields. A ``Content-Length`` above that is rejected before any byte is
read. Memory for the file part therefore stays at about 1 MiB, and the disk it
takes at about the upload limit.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from services.errors import InvalidInput, TooLarge
from services.uploads import Upload

__all__ = ["FORM_FIELDS", "FORM_OVERHEAD_BYTES", "MAX_FIELD_BYTES", "received_upload"]

FORM_FIELDS = ("file", "name", "target")
# The largest non-file field: room for a target that lists many column names.
MAX_FIELD_BYTES = 64 * 1024
FORM_OVERHEAD_BYTES = len(FORM_FIELDS) * MAX_FIELD_BYTES + 64 * 1024


@asynccontextmanager
async def received_upload(request: Request, max_file_bytes: int) -> AsyncIterator[Upload]:
    """Read the multipart body of ``request`` and yield the upload it carries.

    The file part's temporary file is closed when the block exits.

    Raises:
        TooLarge: the body or the file part is above the limit.
        InvalidInput: the body is not multipart/form-data with a file part named
            ``file``, or it has unknown fields.
    """
    _check_content_type(request)
    max_body_bytes = max_file_bytes + FORM_OVERHEAD_BYTES
    _check_content_length(request, max_body_bytes)
    parser = MultiPartParser(
        request.headers,
        _limited(request.stream(), max_body_bytes),
        max_files=1,
        max_fields=len(FORM_FIELDS),
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise InvalidInput(
            f"the multipart body is invalid: {error.message}", loc=("body",)
        ) from error
    except ClientDisconnect as error:
        raise InvalidInput("the client closed the connection during the upload") from error
    try:
        yield _upload_from_form(form, max_file_bytes)
    finally:
        await form.close()


def _check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidInput(
            f"the request body must be multipart/form-data with the data file in a part "
            f"named 'file' (curl -F file=@data.csv), got Content-Type {content_type!r}",
            loc=("header", "content-type"),
        )


def _check_content_length(request: Request, max_body_bytes: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
        raise TooLarge(
            f"the request body is {int(length):,} bytes, above this server's upload limit "
            f"of {max_body_bytes - FORM_OVERHEAD_BYTES:,} bytes for the file; upload a "
            "smaller file or raise STEEP_MAX_UPLOAD_BYTES"
        )


async def _limited(stream: AsyncIterator[bytes], max_body_bytes: int) -> AsyncGenerator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > max_body_bytes:
            raise TooLarge(
                f"the request body is larger than this server's upload limit of "
                f"{max_body_bytes - FORM_OVERHEAD_BYTES:,} bytes for the file; upload a "
                "smaller file or raise STEEP_MAX_UPLOAD_BYTES"
            )
        yield chunk


def _upload_from_form(form: FormData, max_file_bytes: int) -> Upload:
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        raise InvalidInput(
            f"unknown form fields {unknown}; the fields are file, name and target",
            loc=("body", unknown[0]),
        )
    file = form.get("file")
    if file is None:
        raise InvalidInput(
            "file: missing; send the data as a multipart file part named 'file'",
            loc=("body", "file"),
        )
    if not isinstance(file, UploadFile):
        raise InvalidInput(
            "file must be a file part with a filename (curl -F file=@data.csv), not a text field",
            loc=("body", "file"),
        )
    size = file.size or 0
    if size > max_file_bytes:
        raise TooLarge(
            f"the file is {size:,} bytes, above this server's upload limit of "
            f"{max_file_bytes:,} bytes; upload a smaller file or raise STEEP_MAX_UPLOAD_BYTES"
        )
    name, target = form.get("name"), form.get("target")
    return Upload(
        file=file.file,
        filename=file.filename or "upload",
        size_bytes=size,
        name=name if isinstance(name, str) else None,
        target=(target.strip() or None) if isinstance(target, str) else None,
    )
