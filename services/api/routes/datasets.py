"""``/v1/datasets``: the built-in datasets and the tenant's uploads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from services import catalog, uploads
from services.api.deps import SettingsDep, TenantDep
from services.api.problems import problem_responses
from services.api.upload_form import received_upload
from services.schemas import DatasetList, DatasetPublic

# Each operation takes parameters, so each can be a 422. Declaring it replaces FastAPI's
# default 422 entry, which describes a JSON body the problem handler never sends.
router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=problem_responses(422))

DatasetId = Annotated[
    str, Path(max_length=200, description="builtin:<name>, or the id of an upload.")
]

UPLOAD_DESCRIPTION = """\
Upload a CSV (UTF-8 with a header row), an NPZ (arrays `x` and `y`) or a JSON file
(`{"x": [[...]], "y": [...]}`) as multipart/form-data.

- **CSV**: the delimiter is whichever of `,` `;` tab `|` appears most often in the
  header row (a comma when none does); a byte order mark is skipped; quoted fields
  may contain the delimiter. An empty cell or `NaN` is a missing value. A column of
  text is one-hot encoded, with its categories listed in `columns`. A column that
  mixes numbers and text, an infinite value, and numbers written with a decimal
  comma are rejected with the line and column.
- **Target**: `target` names the target column, or several comma-separated numeric
  columns (regression); the default is the last column. A text target is
  classification. A numeric one is classification when all values are whole
  numbers with at most 20 different values and at most one per two rows, and
  regression otherwise. A job spec's `task` overrides this.
- **Rejected at upload** (422): a file that cannot be read as a table, a target
  with a missing or infinite value, a single class, or a different text label in
  every row. **Rejected when a job is submitted**: missing feature values unless
  the spec sets `preprocessing.impute`.
- **Limits**: the file may be at most `STEEP_MAX_UPLOAD_BYTES` (413 above it), with
  at most 10,000 columns, 1,000 categories per text column and 131,072 characters
  per CSV field.

Returns 201 and the dataset. The same bytes uploaded again return the stored
dataset with 200 (409 when they were stored with another target).
"""

UPLOAD_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "The data file: .csv, .npz or .json.",
                    },
                    "name": {
                        "type": "string",
                        "maxLength": uploads.MAX_NAME_CHARS,
                        "description": "A name to show; default: the file name without suffix.",
                    },
                    "target": {
                        "type": "string",
                        "description": "CSV only: the target column, or comma-separated "
                        "columns; default: the last column.",
                    },
                },
            }
        }
    },
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses={
        200: {"model": DatasetPublic, "description": "The same file was uploaded before."},
        **problem_responses(409, 413, 422),
    },
    summary="Upload a dataset",
    description=UPLOAD_DESCRIPTION,
    openapi_extra={"requestBody": UPLOAD_REQUEST_BODY},
)
async def upload_dataset(
    request: Request, response: Response, settings: SettingsDep, tenant: TenantDep
) -> DatasetPublic:
    async with received_upload(request, settings.max_upload_bytes) as upload:
        dataset, created = await run_in_threadpool(uploads.create_dataset, settings, tenant, upload)
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    if not created:
        response.status_code = 200
    return dataset


@router.get(
    "", response_model=DatasetList, responses=problem_responses(422), summary="List datasets"
)
def list_datasets(
    settings: SettingsDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> DatasetList:
    """List the built-in datasets first, then the tenant's uploads, oldest first."""
    return catalog.list_datasets(settings, tenant, limit, cursor)


@router.get(
    "/{dataset_id}",
    response_model=DatasetPublic,
    responses=problem_responses(404),
    summary="Get a dataset",
)
def get_dataset(dataset_id: DatasetId, settings: SettingsDep, tenant: TenantDep) -> DatasetPublic:
    return catalog.get_dataset(settings, tenant, dataset_id)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(404, 409),
    summary="Delete an uploaded dataset",
)
def delete_dataset(dataset_id: DatasetId, settings: SettingsDep, tenant: TenantDep) -> Response:
    """Delete an upload and its arrays. 409 for a built-in dataset, or while a queued or
    running job uses it. Finished jobs keep their weights."""
    uploads.delete_dataset(settings, tenant, dataset_id)
    return Response(status_code=204)
