"""``/v1/jobs``: submit, list, watch, cancel and delete jobs, and use their weights."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter
from sse_starlette import EventSourceResponse

from services import jobs, predict, trace
from services.api.deps import EnqueueDep, SettingsDep, TenantDep
from services.api.events import open_job_events
from services.api.problems import problem_responses
from services.schemas import (
    HistoryColumns,
    JobCreate,
    JobDetail,
    JobList,
    JobStatus,
    PredictRequest,
    PredictResponse,
)
from services.store.history import MIN_POINTS

# Each operation takes parameters, so each can be a 422. Declaring it replaces FastAPI's
# default 422 entry, which describes a JSON body the problem handler never sends.
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(422))

JobId = Annotated[str, Path(max_length=64, description="The job's id.")]


@router.post(
    "",
    status_code=202,
    response_model=JobDetail,
    responses=problem_responses(400, 409, 413, 422, 429),
    summary="Submit a job",
)
def create_job(
    spec: JobCreate,
    response: Response,
    settings: SettingsDep,
    tenant: TenantDep,
    enqueue: EnqueueDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Makes retries safe: the same key with the same spec returns the "
            "same job; the same key with another spec is a 409.",
        ),
    ] = None,
) -> JobDetail:
    """Validate the spec, store the job as queued, and wake a worker. Replays of an
    Idempotency-Key return the original job with ``Idempotent-Replayed: true``."""
    job, created = jobs.create_job(settings, tenant, spec, enqueue, idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return job


@router.get("", response_model=JobList, responses=problem_responses(422), summary="List jobs")
def list_jobs(
    settings: SettingsDep,
    tenant: TenantDep,
    status: Annotated[
        list[JobStatus] | None, Query(description="Keep jobs with any of these statuses.")
    ] = None,
    experiment: Annotated[str | None, Query(max_length=200)] = None,
    dataset: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[
        list[str] | None,
        Query(description="key:value; repeat to require several tags."),
    ] = None,
    sort: Annotated[
        str,
        Query(
            max_length=101,
            description="created_at, finished_at or a metric name such as val_loss; a "
            "leading '-' sorts descending. Jobs without a value come last.",
        ),
    ] = "-created_at",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> JobList:
    return jobs.list_jobs(
        settings,
        tenant,
        statuses=status or (),
        experiment=experiment,
        dataset=dataset,
        tags=tag or (),
        sort=sort,
        limit=limit,
        cursor=cursor,
    )


# Serializes JobDetail to the same JSON bytes FastAPI's response_model would, without
# FastAPI validating the freshly built model a second time first.
JOB_DETAIL_JSON = TypeAdapter(JobDetail)


@router.get(
    "/{job_id}", response_model=JobDetail, responses=problem_responses(404), summary="Get a job"
)
def get_job(job_id: JobId, settings: SettingsDep, tenant: TenantDep) -> Response:
    detail = jobs.get_job(settings, tenant, job_id)
    return Response(JOB_DETAIL_JSON.dump_json(detail), media_type="application/json")


@router.get(
    "/{job_id}/history",
    response_model=HistoryColumns,
    responses={
        304: {"description": "The history has not changed since the ETag in If-None-Match."},
        **problem_responses(404, 422),
    },
    summary="Get a job's per-epoch history as columns",
)
def get_history(
    job_id: JobId,
    settings: SettingsDep,
    tenant: TenantDep,
    after_epoch: Annotated[int, Query(ge=0, description="Return only later epochs.")] = 0,
    max_points: Annotated[
        int | None,
        Query(
            le=1_000_000,
            # jobs.get_history checks the minimum, and its message explains why it is 6.
            json_schema_extra={"minimum": MIN_POINTS},
            description=f"Downsample to at most this many epochs (at least {MIN_POINTS}), "
            "keeping the first, the last, and the minimum and maximum of train_loss and "
            "val_loss.",
        ),
    ] = None,
    if_none_match: Annotated[str | None, Header(max_length=1000)] = None,
) -> Response:
    result = jobs.get_history(
        settings,
        tenant,
        job_id,
        after_epoch=after_epoch,
        max_points=max_points,
        if_none_match=if_none_match,
    )
    headers = {"ETag": result.etag, "Cache-Control": "no-cache"}
    if result.columns is None:
        return Response(status_code=304, headers=headers)
    return JSONResponse(result.columns, headers=headers)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "progress and status events; ids resume with Last-Event-ID.",
        },
        **problem_responses(404, 422),
    },
    summary="Stream a job's progress as Server-Sent Events",
)
async def stream_events(
    job_id: JobId,
    settings: SettingsDep,
    tenant: TenantDep,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> EventSourceResponse:
    events = await open_job_events(settings, tenant, job_id, last_event_id)
    return EventSourceResponse(events)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobDetail,
    responses=problem_responses(404, 409),
    summary="Cancel a job",
)
def cancel_job(job_id: JobId, settings: SettingsDep, tenant: TenantDep) -> JobDetail:
    """Cancel a queued job at once, or ask a running job to stop at the end of its current
    batch."""
    return jobs.cancel_job(settings, tenant, job_id)


@router.get(
    "/{job_id}/weights",
    responses={
        200: {
            "content": {"application/octet-stream": {}, "application/json": {}},
            "description": "A steep parameter file: NPZ, or JSON with format=json.",
        },
        **problem_responses(404, 409),
    },
    summary="Download a job's trained parameters",
    description="409 while the job has no final weights, and for a failed job, whose "
    "stored parameters are not a trained model; checkpoint=latest still serves the "
    "latest checkpoint of either.",
)
def get_weights(
    job_id: JobId,
    settings: SettingsDep,
    tenant: TenantDep,
    format: Annotated[Literal["npz", "json"], Query()] = "npz",
    checkpoint: Annotated[
        Literal["latest"] | None,
        Query(description="latest: before the final weights exist, serve the latest checkpoint."),
    ] = None,
) -> Response:
    parameter_file = predict.get_parameter_file(settings, tenant, job_id, format, checkpoint)
    disposition = f'attachment; filename="{parameter_file.filename}"'
    return Response(
        parameter_file.content,
        media_type=parameter_file.media_type,
        headers={"Content-Disposition": disposition},
    )


@router.post(
    "/{job_id}/predict",
    response_model=PredictResponse,
    responses=problem_responses(400, 404, 409, 413, 422),
    summary="Predict with a job's trained model",
)
def predict_job(
    job_id: JobId, body: PredictRequest, settings: SettingsDep, tenant: TenantDep
) -> PredictResponse:
    return predict.predict(settings, tenant, job_id, body)


@router.get(
    "/{job_id}/trace",
    response_model=dict[str, Any],
    responses=problem_responses(404, 409, 422),
    summary="Decompose a job's first training step",
)
def get_trace(
    job_id: JobId,
    settings: SettingsDep,
    tenant: TenantDep,
    max_values: Annotated[
        int,
        Query(
            ge=1,
            le=trace.MAX_VALUES_LIMIT,
            description="Arrays with more entries than this come as a summary: shape, "
            "mean, std, min, max and L2 norm.",
        ),
    ] = trace.DEFAULT_MAX_VALUES,
) -> dict[str, Any]:
    """Return the first step of the job's run: the first batch, the forward values per
    layer, the loss, the gradients with respect to each layer's output and parameters,
    and each parameter's value before and after the optimizer's update. The trace is
    computed from the spec and dataset, so it is available before the job runs."""
    return trace.get_trace(settings, tenant, job_id, max_values)


@router.delete(
    "/{job_id}",
    status_code=204,
    responses=problem_responses(404, 409),
    summary="Delete a job",
)
def delete_job(job_id: JobId, settings: SettingsDep, tenant: TenantDep) -> Response:
    """Delete a job and its history, checkpoint and weights. A running job is a 409:
    cancel it first, and delete it once it has stopped."""
    jobs.delete_job(settings, tenant, job_id)
    return Response(status_code=204)
