"""``/v1/experiments``: experiment names with job counts and the best job of each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services import experiments
from services.api.deps import SettingsDep, TenantDep
from services.api.problems import problem_responses
from services.sweep_schemas import ExperimentList

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


@router.get(
    "",
    response_model=ExperimentList,
    responses=problem_responses(422),
    summary="List experiments",
)
def list_experiments(
    settings: SettingsDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> ExperimentList:
    """List the experiments of the tenant's jobs in name order, with job counts by status
    and the best succeeded job by its monitored value."""
    return experiments.list_experiments(settings, tenant, limit=limit, cursor=cursor)
