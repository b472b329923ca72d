"""A Python client for steep's HTTP API, on httpx. It imports nothing of the server.

from services.client import Client
with Client("http://127.0.0.1:8000") as steep:
    job = steep.submit(spec)
    job = steep.wait(job.id)
    print(job.status, job.metrics)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

__all__ = ["TERMINAL_STATUSES", "Client", "Job", "SteepError"]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
_RETRY_STATUSES = frozenset({502, 503, 504})


class SteepError(Exception):
    """An error response from steep, carrying its problem details."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        detail = problem.get("detail") or problem.get("title") or "request failed"
        errors = problem.get("errors") or []
        lines = [f"{status}: {detail}"]
        for error in errors:
            location = ".".join(str(part) for part in error.get("loc", []))
            lines.append(f"  {location}: {error.get('msg')}")
        super().__init__("\n".join(lines))


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Job:
    """A job as the API returns it."""

    id: str
    status: str
    name: str | None
    experiment: str
    dataset: str
    stop_reason: str | None
    progress: dict[str, Any]
    metrics: dict[str, float]
    best: dict[str, Any] | None
    attempt: int
    error: dict[str, Any] | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(
            id=data["id"],
            status=data["status"],
            name=data.get("name"),
            experiment=data.get("experiment", "default"),
            dataset=data.get("dataset", ""),
            stop_reason=data.get("stop_reason"),
            progress=data.get("progress") or {},
            metrics=data.get("metrics") or {},
            best=data.get("best"),
            attempt=data.get("attempt", 0),
            error=data.get("error"),
            created_at=_parse_time(data.get("created_at")),
            started_at=_parse_time(data.get("started_at")),
            finished_at=_parse_time(data.get("finished_at")),
            raw=data,
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Client:
    """A connection to one steep service.

    Connection errors and 502/503/504 responses are retried up to ``retries`` times
    with backoff. A submit is retried with the same ``Idempotency-Key``, so a retry
    after a lost response never creates a second job.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
        self.retries = retries

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == self.retries:
                    break
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            raise SteepError(response.status_code, problem)
        return response

    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Submit a job spec and return the queued job."""
        key = idempotency_key or str(uuid.uuid4())
        response = self._request("POST", "/v1/jobs", json=spec, headers={"Idempotency-Key": key})
        return Job.from_json(response.json())

    def get(self, job_id: str) -> Job:
        return Job.from_json(self._request("GET", f"/v1/jobs/{job_id}").json())

    def history(self, job_id: str, *, after_epoch: int | None = None) -> dict[str, list[Any]]:
        """Fetch the per-epoch history as columns (``{"epoch": [...], "train_loss": [...]}``)."""
        params = {} if after_epoch is None else {"after_epoch": after_epoch}
        return dict(self._request("GET", f"/v1/jobs/{job_id}/history", params=params).json())

    def cancel(self, job_id: str) -> Job:
        return Job.from_json(self._request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def weights(self, job_id: str, *, format: str = "npz") -> bytes:
        """Download the trained parameter file: NPZ bytes, or JSON text encoded as UTF-8."""
        params = {"format": format}
        return self._request("GET", f"/v1/jobs/{job_id}/weights", params=params).content

    def wait(
        self,
        job_id: str,
        *,
        poll_seconds: float = 0.5,
        timeout: float | None = None,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job finishes; call ``on_update`` with each fetched state.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_update is not None:
                on_update(job)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout} s")
            time.sleep(poll_seconds)
