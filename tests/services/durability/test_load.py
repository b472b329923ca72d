"""Many jobs over HTTP at once: the soak in the distributed mode, and several SQLite writers
in the embedded mode. Every job succeeds, none is lost and none trains twice."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.settings import Settings
from services.store.db import session_scope
from services.store.models import HistoryRow, Job, Transition
from tests.services.auth import bearer
from tests.services.conftest import Configure
from tests.services.durability.checks import DISTRIBUTED_ONLY, FAST_RECOVERY
from tests.services.durability.processes import Processes, free_port
from tests.services.worker.helpers import TEA_SPEC, wait_for

pytestmark = pytest.mark.slow

EMBEDDED_ONLY = pytest.mark.parametrize("mode", ["embedded"], indirect=True)


def _tea_spec(epochs: int) -> dict[str, Any]:
    return {**TEA_SPEC, "training": {**TEA_SPEC["training"], "epochs": epochs}}


def _submit_all(
    settings: Settings, base_url: str, specs: list[dict[str, Any]], threads: int
) -> list[httpx.Response]:
    """POST every spec from ``threads`` clients at once, with the settings' API key; return
    the responses in order."""
    assert settings.api_key is not None
    headers = bearer(settings.api_key.get_secret_value())
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:

        def submit(spec: dict[str, Any]) -> httpx.Response:
            return client.post("/v1/jobs", json=spec)

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(submit, specs))


def _count_by_status(settings: Settings) -> Counter[str]:
    with session_scope(settings.resolved_database_url, write=False) as session:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return Counter({str(status): int(count) for status, count in rows})


def _per_job(settings: Settings, column: Any, *conditions: Any) -> Counter[str]:
    """Count rows per job id in the table of ``column`` (a job_id column)."""
    with session_scope(settings.resolved_database_url, write=False) as session:
        rows = session.execute(select(column, func.count()).where(*conditions).group_by(column))
        return Counter({str(job_id): int(count) for job_id, count in rows})


def _assert_each_trained_once(settings: Settings, job_ids: list[str], epochs: int) -> None:
    claims = _per_job(settings, Transition.job_id, Transition.status == "running")
    history = _per_job(settings, HistoryRow.job_id)
    assert {job_id: claims[job_id] for job_id in job_ids} == dict.fromkeys(job_ids, 1)
    assert {job_id: history[job_id] for job_id in job_ids} == dict.fromkeys(job_ids, epochs)


@DISTRIBUTED_ONLY
def test_soak_burst_of_jobs(configure: Configure, processes: Processes) -> None:
    """500 two-epoch jobs sent at once over HTTP to two workers all succeed, each trained once."""
    settings = configure(**FAST_RECOVERY, max_queued_jobs_per_tenant=500)
    port = free_port()
    processes.api(port)
    processes.worker("worker-a")
    processes.worker("worker-b")
    processes.reaper()

    responses = _submit_all(settings, f"http://127.0.0.1:{port}", [_tea_spec(2)] * 500, threads=8)
    job_ids = [response.json()["id"] for response in responses if response.status_code == 202]
    wait_for(lambda: _count_by_status(settings)["succeeded"] >= 500, timeout=180, interval=0.5)

    assert [r.status_code for r in responses] == [202] * 500
    assert len(set(job_ids)) == 500
    assert _count_by_status(settings) == Counter(succeeded=500)
    _assert_each_trained_once(settings, job_ids, epochs=2)


@EMBEDDED_ONLY
def test_sqlite_writers_never_locked(configure: Configure, processes: Processes) -> None:
    """The API, two workers and the reaper write one SQLite file at once without lock errors.

    Every epoch end writes a checkpoint, and leases are renewed every 0.1 s, so the
    four processes compete for the database's write lock all the time.
    """
    settings = configure(**FAST_RECOVERY)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    processes.api(port)
    processes.worker("worker-a")
    processes.worker("worker-b")
    processes.reaper()

    responses = _submit_all(settings, base_url, [_tea_spec(20)] * 30, threads=4)
    job_ids = [response.json()["id"] for response in responses if response.status_code == 202]
    reads: list[int] = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while _count_by_status(settings)["succeeded"] < len(job_ids):
            reads.append(client.get("/v1/jobs", params={"limit": 100}).status_code)
            reads.append(client.get(f"/v1/jobs/{job_ids[len(reads) % len(job_ids)]}").status_code)
            assert len(reads) < 20_000, processes.logs()

    assert [r.status_code for r in responses] == [202] * 30
    assert set(reads) <= {200}
    assert _count_by_status(settings) == Counter(succeeded=30)
    _assert_each_trained_once(settings, job_ids, epochs=20)
    assert "database is locked" not in processes.logs()
