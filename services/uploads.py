"""Dataset uploads: read a user's file, store its encoded arrays, and delete uploads.

An upload is parsed completely and checked before anything is written; the row and
its blob are then inserted in one transaction, so a rejected or failed upload
leaves nothing behind. The same bytes uploaded again by the same tenant return the
stored dataset instead of a copy (the ``(tenant, sha256)`` unique constraint).

What is rejected at upload (422) and what only when a job is submitted:

- At upload: files that cannot be read as a table (the messages of
  ``core.tabular``), an unknown file type, an empty file, a CSV or JSON file that
  is binary (a NUL byte, or no UTF-8 at its start), a target with a missing
  or infinite value, a classification target with a single class, and a text
  target whose every row has its own label (an identifier, not a class).
- At submit (``catalog.check_dataset_fits``): missing feature values without
  ``preprocessing.impute``, and a regression on text labels. Missing values are
  stored as NaN, so the same upload serves a job that imputes them.

Task inference: a text target is classification. A numeric target is
classification when every value is a whole number and it has at most
``MAX_INFERRED_CLASSES`` different values and at most one per two rows; any other
numeric target, and several target columns, are regression. A job spec's ``task``
(or its loss) overrides the inferred task.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO, Any, Literal

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.encoding import Encoding
from core.tabular import Limits, Table, read_csv_header, read_table
from services.catalog import upload_public
from services.datasets import BUILTIN_PREFIX
from services.errors import Conflict, InvalidInput, NotFound, TooLarge
from services.schemas import DatasetPublic
from services.settings import Settings
from services.store.db import session_scope
from services.store.models import DatasetBlob, DatasetRow, Job, utcnow

__all__ = [
    "MAX_INFERRED_CLASSES",
    "MAX_NAME_CHARS",
    "StoredTarget",
    "Upload",
    "create_dataset",
    "delete_dataset",
    "infer_target",
]

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
MAX_INFERRED_CLASSES = 20
# The encoded x may hold one float64 value per two bytes of the upload limit (so it
# takes at most 4 times max_upload_bytes), and at least this many values.
MIN_VALUES_LIMIT = 1_000_000

FileFormat = Literal["csv", "npz", "json"]
_SUFFIX_FORMATS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".npz": "npz",
    ".json": "json",
}
_READ_CHUNK_BYTES = 1 << 20
# A binary file is not UTF-8 within its first bytes. An invalid byte further on more
# likely belongs to text saved in another encoding, and core.tabular names it.
_UTF8_CHECK_BYTES = 1 << 16
_ACCEPTED_FILES = (
    "upload a UTF-8 .csv file with a header row, an .npz file with arrays x and y, or a "
    '.json file {"x": ..., "y": ...}'
)


@dataclass(frozen=True)
class Upload:
    """A received upload: a seekable binary file and the form's other fields."""

    file: IO[bytes]
    filename: str
    size_bytes: int
    name: str | None = None
    target: str | None = None


@dataclass(frozen=True)
class StoredTarget:
    """The stored form of y, with the task and classes inferred from it."""

    y: np.ndarray
    task: Literal["classification", "regression"]
    classes: list[Any] | None
    kind: Literal["number", "text"]


# Creating ------------------------------------------------------------------------------


def create_dataset(settings: Settings, tenant: str, upload: Upload) -> tuple[DatasetPublic, bool]:
    """Parse, check and store an uploaded file; return the dataset and whether it is new.

    Raises:
        InvalidInput: the file, its name or the target is invalid; the message names
            the line or row and the column.
        TooLarge: the file is larger than ``settings.max_upload_bytes``.
        Conflict: the same file was uploaded before with another target.
    """
    fmt = _file_format(upload)
    name = _dataset_name(upload)
    if upload.size_bytes > settings.max_upload_bytes:
        raise TooLarge(_too_large_message(upload.size_bytes, settings.max_upload_bytes))
    if upload.size_bytes == 0:
        raise InvalidInput(f"file {upload.filename!r} is empty (0 bytes)", loc=("body", "file"))
    _check_text(upload, fmt)
    target_names = _requested_targets(upload, fmt)
    sha256 = _sha256(upload.file)

    existing = _find_existing(settings, tenant, sha256, target_names)
    if existing is not None:
        return existing, False
    row, blob = _parse(upload, fmt, name, tenant, sha256, settings)
    try:
        with session_scope(settings.resolved_database_url) as session:
            session.add(row)
            session.flush()
            session.add(DatasetBlob(dataset_id=row.id, data=blob))
            public = upload_public(row)
    except IntegrityError:
        # A concurrent upload of the same bytes committed first.
        existing = _find_existing(settings, tenant, sha256, target_names)
        if existing is None:
            raise
        return existing, False
    logger.info(
        "dataset %s uploaded (tenant %s, %s, %d samples, %d features, %s)",
        row.id,
        tenant,
        fmt,
        row.n_samples,
        row.n_features,
        row.task,
    )
    return public, True


def _file_format(upload: Upload) -> FileFormat:
    suffix = PurePath(upload.filename).suffix.lower()
    if suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    if suffix:
        raise InvalidInput(
            f"file {upload.filename!r} has the unknown type {suffix!r}; upload a .csv "
            '(with a header row), .npz (arrays x and y) or .json ({"x": ..., "y": ...}) file',
            loc=("body", "file"),
        )
    head = upload.file.read(512)
    upload.file.seek(0)
    if head.startswith(b"PK"):
        return "npz"
    if head.lstrip().startswith(b"{"):
        return "json"
    return "csv"


def _dataset_name(upload: Upload) -> str:
    name = (upload.name or "").strip() or PurePath(upload.filename).stem or "upload"
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(
            f"name has {len(name)} characters, above the limit of {MAX_NAME_CHARS}",
            loc=("body", "name"),
        )
    return name


def _too_large_message(size: int, limit: int) -> str:
    return (
        f"the file is {size:,} bytes, above this server's upload limit of {limit:,} bytes "
        f"({limit / 2**20:.1f} MiB); upload a smaller file or raise STEEP_MAX_UPLOAD_BYTES"
    )


def _check_text(upload: Upload, fmt: FileFormat) -> None:
    """Reject a CSV or JSON upload that is not text, before its header is parsed.

    Raises:
        InvalidInput: the first 64 KiB are not UTF-8, or the file has a NUL byte.
    """
    if fmt == "npz":
        return
    problem = _utf8_error(upload.file) or _nul_byte(upload.file)
    upload.file.seek(0)
    if problem is not None:
        raise InvalidInput(
            f"file {upload.filename!r} is not a CSV or JSON text file: {problem}; "
            f"{_ACCEPTED_FILES}, and save a text file in another encoding as UTF-8",
            loc=("body", "file"),
        )


def _utf8_error(file: IO[bytes]) -> str | None:
    file.seek(0)
    head = file.read(_UTF8_CHECK_BYTES)
    try:
        # With final=False, a character cut off at the end of the head is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as error:
        return f"it is not UTF-8 ({error.reason}, byte {error.start:,} is {head[error.start]:#04x})"
    return None


def _nul_byte(file: IO[bytes]) -> str | None:
    file.seek(0)
    offset = 0
    while chunk := file.read(_READ_CHUNK_BYTES):
        index = chunk.find(b"\x00")
        if index >= 0:
            return f"byte {offset + index:,} is a NUL byte"
        offset += len(chunk)
    return None


def _requested_targets(upload: Upload, fmt: FileFormat) -> list[str] | None:
    """Return the target columns a CSV upload selects; None for NPZ and JSON."""
    if fmt != "csv":
        if upload.target is not None:
            raise InvalidInput(
                f"target selects a CSV column, but {upload.filename!r} is {fmt} data, whose "
                "targets are its array y; leave target out",
                loc=("body", "target"),
            )
        return None
    try:
        names = read_csv_header(upload.file, upload.target)
    except ValueError as error:
        field = "target" if str(error).startswith("target") else "file"
        raise InvalidInput(str(error), loc=("body", field)) from error
    finally:
        upload.file.seek(0)
    return names


def _sha256(file: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := file.read(_READ_CHUNK_BYTES):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


def _find_existing(
    settings: Settings, tenant: str, sha256: str, target_names: list[str] | None
) -> DatasetPublic | None:
    """Return the tenant's dataset with these bytes, if any.

    Raises:
        Conflict: it was stored with other target columns.
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        row = session.scalar(
            select(DatasetRow).where(DatasetRow.tenant == tenant, DatasetRow.sha256 == sha256)
        )
        if row is None:
            return None
        if target_names is not None and list(row.target_names) != target_names:
            raise Conflict(
                f"this file was already uploaded as dataset {row.id} ({row.name!r}) with the "
                f"target {', '.join(map(repr, row.target_names))}; delete that dataset to "
                f"upload the file again with the target {', '.join(map(repr, target_names))}"
            )
        return upload_public(row)


# Parsing ---------------------------------------------------------------------------------


def _parse(
    upload: Upload, fmt: FileFormat, name: str, tenant: str, sha256: str, settings: Settings
) -> tuple[DatasetRow, bytes]:
    """Read the file and return the dataset row and its NPZ blob, or raise InvalidInput."""
    limits = Limits(max_values=max(settings.max_upload_bytes // 2, MIN_VALUES_LIMIT))
    try:
        table = read_table(
            upload.file, fmt=fmt, target=upload.target, text_features=True, limits=limits
        )
        target = infer_target(table)
    except ValueError as error:
        raise InvalidInput(str(error), loc=("body", "file")) from error
    encoding = table.encoding or Encoding.numeric(table.feature_names)
    stored_encoding = {
        **encoding.to_dict(),
        "target": {"type": target.kind},
        "missing": _missing_values(table, encoding),
    }
    row = DatasetRow(
        id=uuid.uuid4().hex,
        tenant=tenant,
        name=name,
        task=target.task,
        n_samples=table.n_samples,
        n_features=table.n_features,
        n_outputs=_n_outputs(target),
        feature_names=table.feature_names,
        target_names=table.target_names,
        classes=target.classes,
        encoding=stored_encoding,
        file_format=fmt,
        sha256=sha256,
        size_bytes=upload.size_bytes,
        created_at=utcnow(),
    )
    return row, _npz_bytes(table.x, target.y)


def infer_target(table: Table) -> StoredTarget:
    """Infer the task from the targets and return y in its stored form.

    Raises:
        ValueError: a classification target has one class, or a text target has a
            different label in every row.
    """
    y = table.y
    name = ", ".join(map(repr, table.target_names))
    if y.ndim == 2:
        return StoredTarget(y.astype(np.float64), "regression", None, "number")
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.dtype.kind == "U":
        labels, indices = np.unique(y, return_inverse=True)
        _check_classes(name, labels, len(y), text=True)
        return StoredTarget(indices.astype(np.int64), "classification", labels.tolist(), "text")
    values = y.astype(np.float64)
    distinct = np.unique(values)
    whole = bool(np.all(values == np.round(values))) and np.abs(values).max() < 2**53
    if whole and len(distinct) <= min(MAX_INFERRED_CLASSES, len(values) // 2):
        _check_classes(name, distinct.astype(np.int64), len(values), text=False)
        classes = [int(value) for value in distinct]
        return StoredTarget(values.astype(np.int64), "classification", classes, "number")
    return StoredTarget(values, "regression", None, "number")


def _check_classes(name: str, labels: np.ndarray, n_samples: int, *, text: bool) -> None:
    if len(labels) < 2:
        raise ValueError(
            f"target column {name} has the same value, {labels[0].item()!r}, in all "
            f"{n_samples} rows; a classification target needs at least 2 classes"
        )
    if text and n_samples >= 3 and len(labels) == n_samples:
        raise ValueError(
            f"target column {name} has a different label in each of its {n_samples} rows, "
            "like an identifier; choose a column of class labels or numbers as the target"
        )


def _n_outputs(target: StoredTarget) -> int:
    if target.classes is not None:
        return len(target.classes)
    return 1 if target.y.ndim == 1 else int(target.y.shape[1])


def _missing_values(table: Table, encoding: Encoding) -> dict[str, Any] | None:
    """Count missing feature values and find the first, by row, then by column order."""
    count = 0
    first: tuple[int, str] | None = None
    start = 0
    for column in encoding.columns:
        # A missing value is NaN in every feature of its column, so the first one suffices.
        missing = np.isnan(table.x[:, start])
        n_missing = int(missing.sum())
        if n_missing:
            count += n_missing
            row = int(np.argmax(missing))
            if first is None or row < first[0]:
                first = (row, column.name)
        start += column.width
    if first is None:
        return None
    line = None if table.lines is None else int(table.lines[first[0]])
    return {"count": count, "row": first[0], "line": line, "column": first[1]}


def _npz_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    """Write x and y as a deflated NPZ archive, as ``numpy.savez_compressed`` does.

    Deflate level 1 instead of NumPy's fixed 6: on uploaded tables it is several
    times faster and the archive only about a tenth larger.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in (("x", x), ("y", y)):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


# Deleting --------------------------------------------------------------------------------


def delete_dataset(settings: Settings, tenant: str, dataset_id: str) -> None:
    """Delete an uploaded dataset and its arrays.

    Finished jobs keep their weights, but cannot be rerun on the deleted data.

    NOTE: a job submitted while this runs can pass its dataset check just before the
    delete commits; such a job fails on its worker with "dataset ... not found".

    Raises:
        Conflict: the dataset is built in, or a queued or running job uses it.
        NotFound: ``tenant`` has no upload with that id.
    """
    if dataset_id.startswith(BUILTIN_PREFIX):
        raise Conflict(
            f"dataset {dataset_id!r} is built in and cannot be deleted; only uploads can"
        )
    with session_scope(settings.resolved_database_url) as session:
        row = session.scalar(
            select(DatasetRow).where(DatasetRow.tenant == tenant, DatasetRow.id == dataset_id)
        )
        if row is None:
            raise NotFound(f"dataset {dataset_id!r} not found")
        _check_unused(session, tenant, dataset_id)
        session.execute(delete(DatasetBlob).where(DatasetBlob.dataset_id == dataset_id))
        session.delete(row)
    logger.info("dataset %s deleted (tenant %s)", dataset_id, tenant)


def _check_unused(session: Session, tenant: str, dataset_id: str) -> None:
    active = list(
        session.scalars(
            select(Job.id)
            .where(
                Job.tenant == tenant,
                Job.dataset == dataset_id,
                Job.status.in_(("queued", "running")),
            )
            .order_by(Job.created_at)
            .limit(6)
        )
    )
    if active:
        shown = ", ".join(active[:5]) + (" and more" if len(active) > 5 else "")
        raise Conflict(
            f"dataset {dataset_id!r} is used by queued or running jobs ({shown}); cancel "
            "them or wait until they finish, then delete the dataset"
        )
