"""The step-trace service: a job's first training step, decomposed by ``core.trace``."""

from __future__ import annotations

import logging
from typing import Any

from core.trace import trace_first_step
from services.datasets import load_dataset
from services.errors import Conflict, NotFound
from services.jobs import require_job
from services.settings import Settings
from services.store.db import session_scope

__all__ = ["DEFAULT_MAX_VALUES", "MAX_VALUES_LIMIT", "get_trace"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_VALUES = 64
# Full values of larger arrays would make a response of megabytes for a modest model.
MAX_VALUES_LIMIT = 4096


def get_trace(
    settings: Settings, tenant: str, job_id: str, max_values: int = DEFAULT_MAX_VALUES
) -> dict[str, Any]:
    """Trace the first training step of the job's spec on its dataset.

    The data are loaded as the worker loads them, so the trace shows the batch, the
    initial parameters and the update of the job's own first step. The job need not
    have run: the trace is computed from its spec and dataset on request.

    NOTE: the step runs in the API process, so a model near ``max_parameters`` with a
    large batch costs one full training step of CPU time per request.

    Raises:
        NotFound: no job of ``tenant`` has that id.
        Conflict: the job's dataset no longer exists, or its data do not fit its spec.
    """
    with session_scope(settings.resolved_database_url, write=False) as session:
        job = require_job(session, tenant, job_id)
        spec, dataset_id = job.spec, job.dataset
        try:
            data = load_dataset(session, tenant, dataset_id)
        except NotFound as error:
            raise Conflict(
                f"job {job_id}'s dataset {dataset_id!r} no longer exists, so its first step "
                "cannot be traced"
            ) from error
    try:
        return trace_first_step(
            spec, data.x, data.y, task=data.task, classes=data.classes, max_values=max_values
        )
    except (ValueError, TypeError) as error:
        logger.info("job %s: the first step could not be traced: %s", job_id, error)
        raise Conflict(
            f"the first step of job {job_id} cannot be traced on dataset {dataset_id!r}: {error}"
        ) from error
