"""``/v1/sweeps``: run one base spec over a grid or a random sample of hyperparameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response

from services import sweeps
from services.api.deps import EnqueueDep, SettingsDep, TenantDep
from services.api.problems import problem_responses
from services.sweep_schemas import SweepCreate, SweepDetail, SweepList, SweepStatus

# Each operation takes parameters, so each can be a 422. Declaring it replaces FastAPI's
# default 422 entry, which describes a JSON body the problem handler never sends.
router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], responses=problem_responses(422))

SweepId = Annotated[str, Path(max_length=64, description="The sweep's id.")]


@router.post(
    "",
    status_code=202,
    response_model=SweepDetail,
    responses=problem_responses(400, 409, 413, 422),
    summary="Submit a sweep",
)
def create_sweep(
    body: SweepCreate,
    response: Response,
    settings: SettingsDep,
    tenant: TenantDep,
    enqueue: EnqueueDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Makes retries safe: the same key with the same body returns the "
            "same sweep; the same key with another body is a 409.",
        ),
    ] = None,
) -> SweepDetail:
    """Validate every trial's spec, store the sweep, and start its first trials.

    A trial is one combination of parameter values and becomes one job, tagged
    ``sweep:<id>`` and ``trial:<index>``. At most ``max_parallel`` of the sweep's jobs
    are queued or running at once. A 422 names the parameter and the trial whose
    spec is invalid, and so does a sweep with more trials than the server allows.
    """
    sweep, created = sweeps.create_sweep(settings, tenant, body, enqueue, idempotency_key)
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return sweep


@router.get("", response_model=SweepList, responses=problem_responses(422), summary="List sweeps")
def list_sweeps(
    settings: SettingsDep,
    tenant: TenantDep,
    status: Annotated[
        list[SweepStatus] | None, Query(description="Keep sweeps with any of these statuses.")
    ] = None,
    experiment: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> SweepList:
    """List the tenant's sweeps, newest first, with trial counts by status."""
    return sweeps.list_sweeps(
        settings,
        tenant,
        statuses=status or (),
        experiment=experiment,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/{sweep_id}",
    response_model=SweepDetail,
    responses=problem_responses(404),
    summary="Get a sweep with its leaderboard",
)
def get_sweep(sweep_id: SweepId, settings: SettingsDep, tenant: TenantDep) -> SweepDetail:
    return sweeps.get_sweep(settings, tenant, sweep_id)


@router.post(
    "/{sweep_id}/cancel",
    status_code=202,
    response_model=SweepDetail,
    responses=problem_responses(404, 409),
    summary="Cancel a sweep",
)
def cancel_sweep(sweep_id: SweepId, settings: SettingsDep, tenant: TenantDep) -> SweepDetail:
    """Start no more trials, cancel the queued ones, and stop the running ones at their
    next flush. 409 once the sweep has ended."""
    return sweeps.cancel_sweep(settings, tenant, sweep_id)
