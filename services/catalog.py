"""Dataset descriptions for the API: the built-in datasets and a tenant's uploads.

Describing a dataset never loads an upload's arrays: the ``datasets`` row carries
every field. A built-in dataset is loaded once per process to fill its fields.

An upload's ``encoding`` column stores what the arrays alone do not: the input
columns (``core.encoding.Encoding.to_dict``), the target's type (``"number"`` or
``"text"``) and where the first missing feature value is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

import core
from core.encoding import Encoding
from core.spec import JobSpec
from core.split import held_out_count
from services.datasets import BUILTIN_PREFIX
from services.errors import InvalidInput, NotFound
from services.schemas import ColumnPublic, DatasetList, DatasetPublic, MissingValues
from services.settings import Settings
from services.store.db import session_scope
from services.store.models import DatasetRow

__all__ = [
    "BUILTIN_CREATED_AT",
    "builtin_dataset",
    "check_dataset_fits",
    "describe_dataset",
    "get_dataset",
    "list_datasets",
    "require_dataset",
]

# Built-in datasets ship with steep and have no upload time; they all report this date.
BUILTIN_CREATED_AT = datetime(2025, 1, 1, tzinfo=UTC)


@cache
def builtin_dataset(name: str) -> DatasetPublic:
    """Describe the built-in dataset ``name`` (without the prefix).

    ``sha256`` is the digest of x's bytes followed by y's, in C order, and
    ``size_bytes`` their total size in memory.

    Raises:
        ValueError: no built-in dataset has that name.
    """
    dataset = core.load_builtin(name)
    digest = hashlib.sha256()
    for array in (dataset.x, dataset.y):
        digest.update(array.tobytes(order="C"))
    return DatasetPublic(
        id=BUILTIN_PREFIX + dataset.name,
        name=dataset.name,
        source="builtin",
        task=dataset.task,
        n_samples=dataset.n_samples,
        n_features=dataset.n_features,
        n_outputs=dataset.n_outputs,
        feature_names=list(dataset.feature_names),
        classes=None if dataset.classes is None else list(dataset.classes),
        sha256=digest.hexdigest(),
        size_bytes=dataset.x.nbytes + dataset.y.nbytes,
        created_at=BUILTIN_CREATED_AT,
        columns=_columns_public(Encoding.numeric(dataset.feature_names)),
        target_names=["target"],
        missing_values=None,
    )


def upload_public(row: DatasetRow) -> DatasetPublic:
    """Build the public view of an uploaded dataset's row."""
    stored: dict[str, Any] = row.encoding or {}
    if "columns" in stored:
        encoding = Encoding.from_dict(stored)
    else:
        encoding = Encoding.numeric([str(name) for name in row.feature_names])
    missing = stored.get("missing")
    return DatasetPublic(
        id=row.id,
        name=row.name,
        source="upload",
        task=row.task,
        n_samples=row.n_samples,
        n_features=row.n_features,
        n_outputs=row.n_outputs,
        feature_names=[str(name) for name in row.feature_names],
        classes=row.classes,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
        columns=_columns_public(encoding),
        target_names=[str(name) for name in row.target_names],
        missing_values=MissingValues(**missing) if missing else None,
    )


def _columns_public(encoding: Encoding) -> list[ColumnPublic]:
    return [
        ColumnPublic(
            name=column.name,
            type="text" if column.is_text else "number",
            categories=None if column.categories is None else list(column.categories),
        )
        for column in encoding.columns
    ]


def get_dataset(settings: Settings, tenant: str, dataset_id: str) -> DatasetPublic:
    """Describe one dataset as ``tenant`` sees it.

    Raises:
        NotFound: no built-in dataset has that id, and no upload of ``tenant`` has it.
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        return describe_dataset(session, tenant, dataset_id)


def describe_dataset(session: Session, tenant: str, dataset_id: str) -> DatasetPublic:
    """Describe one dataset as ``tenant`` sees it, in an open session.

    Raises:
        NotFound: no built-in dataset has that id, and no upload of ``tenant`` has it.
    """
    if dataset_id.startswith(BUILTIN_PREFIX):
        name = dataset_id.removeprefix(BUILTIN_PREFIX)
        if name not in core.BUILTIN_NAMES:
            raise NotFound(
                f"dataset {dataset_id!r} not found; the built-in datasets are "
                + ", ".join(BUILTIN_PREFIX + known for known in core.BUILTIN_NAMES)
            )
        return builtin_dataset(name)
    row = session.scalar(
        select(DatasetRow).where(DatasetRow.tenant == tenant, DatasetRow.id == dataset_id)
    )
    if row is None:
        hint = ""
        if dataset_id in core.BUILTIN_NAMES:
            hint = f"; built-in ids carry a prefix, did you mean {BUILTIN_PREFIX + dataset_id!r}?"
        raise NotFound(f"dataset {dataset_id!r} not found{hint}")
    return upload_public(row)


def list_datasets(
    settings: Settings, tenant: str, limit: int = 50, cursor: str | None = None
) -> DatasetList:
    """Return one page of datasets: the built-ins in a fixed order, then uploads oldest first.

    Raises:
        InvalidInput: ``cursor`` is not one this function returned.
    """
    try:
        after = _decode_cursor(cursor) if cursor else None
    except ValueError as error:
        raise InvalidInput(f"cursor is invalid: {error}", loc=("query", "cursor")) from error
    with session_scope(settings.resolved_database_url, write=False) as session:
        return _page(session, tenant, limit, after)


def _page(session: Session, tenant: str, limit: int, after: dict[str, str] | None) -> DatasetList:
    # An extra item beyond the page means a next page exists.
    wanted = limit + 1
    items: list[DatasetPublic] = []
    if after is None or after["source"] == "builtin":
        start = 0 if after is None else core.BUILTIN_NAMES.index(after["name"]) + 1
        items = [builtin_dataset(name) for name in core.BUILTIN_NAMES[start : start + wanted]]
    if len(items) < wanted:
        upload_after = after if after is not None and after["source"] == "upload" else None
        items += _list_uploads(session, tenant, wanted - len(items), upload_after)
    page = items[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(items) > limit else None
    return DatasetList(items=page, next_cursor=next_cursor)


def _list_uploads(
    session: Session, tenant: str, limit: int, after: dict[str, str] | None
) -> list[DatasetPublic]:
    statement = (
        select(DatasetRow)
        .where(DatasetRow.tenant == tenant)
        .order_by(DatasetRow.created_at, DatasetRow.id)
        .limit(limit)
    )
    if after is not None:
        created_at = datetime.fromisoformat(after["created_at"])
        statement = statement.where(
            or_(
                DatasetRow.created_at > created_at,
                and_(DatasetRow.created_at == created_at, DatasetRow.id > after["id"]),
            )
        )
    return [upload_public(row) for row in session.scalars(statement)]


def _encode_cursor(last: DatasetPublic) -> str:
    if last.source == "builtin":
        payload = {"source": "builtin", "name": last.name}
    else:
        payload = {"source": "upload", "created_at": last.created_at.isoformat(), "id": last.id}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, str]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        source = payload["source"]
        if source == "builtin" and payload["name"] in core.BUILTIN_NAMES:
            return {"source": source, "name": payload["name"]}
        if source == "upload":
            datetime.fromisoformat(payload["created_at"])
            return {"source": source, "created_at": payload["created_at"], "id": str(payload["id"])}
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise ValueError("it is not a cursor returned by this API") from error
    raise ValueError("it is not a cursor returned by this API")


def require_dataset(session: Session, tenant: str, dataset_id: str) -> DatasetPublic:
    """Describe the dataset a job spec names, as a 422 on ``dataset`` when it is unknown.

    Raises:
        InvalidInput: the dataset does not exist for ``tenant``.
    """
    try:
        return describe_dataset(session, tenant, dataset_id)
    except NotFound as error:
        raise InvalidInput(error.message, loc=("body", "dataset")) from error


def check_dataset_fits(spec: JobSpec, dataset: DatasetPublic) -> None:
    """Reject a spec its dataset cannot train, before the job is queued.

    Raises:
        InvalidInput: the dataset has missing feature values and the spec does not
            set ``preprocessing.impute``, the validation split leaves no training
            samples or fewer than the classes, or the spec requests regression on
            text labels.
    """
    missing = dataset.missing_values
    if missing is not None and spec.preprocessing.impute == "none":
        where = f"line {missing.line} (row {missing.row})" if missing.line else f"row {missing.row}"
        raise InvalidInput(
            f"dataset {dataset.id!r} has {missing.count:,} missing feature "
            f"{'value' if missing.count == 1 else 'values'}, the first at {where}, column "
            f"{missing.column!r}; set preprocessing.impute to 'mean' or "
            "'median' to fill them from the training split, or upload the data without gaps",
            loc=("body", "preprocessing", "impute"),
        )
    fraction = spec.training.validation_split
    n_held = held_out_count(dataset.n_samples, fraction)
    if n_held >= dataset.n_samples:
        raise InvalidInput(
            f"training.validation_split is {fraction}, which holds out {n_held:,} of the "
            f"{dataset.n_samples:,} samples of dataset {dataset.id!r} and leaves none to "
            "train on; use a smaller split (0 for none) or a dataset with more samples",
            loc=("body", "training", "validation_split"),
        )
    task = spec.resolved_task(dataset.task)
    n_train, n_classes = dataset.n_samples - n_held, len(dataset.classes or [])
    if task == "classification" and n_train < n_classes:
        raise InvalidInput(
            f"training.validation_split is {fraction}, which leaves {n_train:,} training "
            f"samples of dataset {dataset.id!r} for its {n_classes:,} classes, so some class "
            "would have no training sample; use a smaller split",
            loc=("body", "training", "validation_split"),
        )
    text_labels = any(isinstance(label, str) for label in dataset.classes or [])
    if dataset.source == "upload" and text_labels and task == "regression":
        raise InvalidInput(
            f"dataset {dataset.id!r} has text class labels such as "
            f"{', '.join(repr(label) for label in (dataset.classes or [])[:3])}, so it cannot "
            "train a regression; remove task, or use a classification loss",
            loc=("body", "task") if spec.task is not None else ("body", "loss"),
        )
