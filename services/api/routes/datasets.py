"""``/v1/datasets``: the built-in datasets and the tenant's uploads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from services import catalog
from services.api.deps import SettingsDep, TenantDep
from services.api.problems import problem_responses
from services.schemas import DatasetList, DatasetPublic

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


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
def get_dataset(
    dataset_id: Annotated[
        str, Path(max_length=200, description="builtin:<name>, or the id of an upload.")
    ],
    settings: SettingsDep,
    tenant: TenantDep,
) -> DatasetPublic:
    return catalog.get_dataset(settings, tenant, dataset_id)
