"""A Python client for steep's HTTP API, on httpx. It imports nothing of the server.

from services.client import Client
with Client("http://127.0.0.1:8000") as steep:
    job = steep.submit(spec)
    job = steep.wait(job.id, progress=True)
    print(job.status, job.metrics)
    model = steep.load_model(job.id)  # a core.Model that predicts locally

Results are dataclasses (``services.client_models``); error responses raise a
subclass of ``SteepError`` chosen by status (``services.client_errors``).
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx

from services.client_errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    QuotaError,
    ServerError,
    SteepError,
    TooLargeError,
    UnreachableError,
    ValidationError,
    error_for,
)
from services.client_models import (
    TERMINAL_STATUSES,
    Experiment,
    Job,
    LeaderboardEntry,
    Page,
    Prediction,
    Sweep,
)
from services.settings import get_settings

if TYPE_CHECKING:
    import numpy as np

    from core.model import Model

__all__ = [
    "TERMINAL_STATUSES",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "Experiment",
    "Job",
    "LeaderboardEntry",
    "NotFoundError",
    "Page",
    "Prediction",
    "QuotaError",
    "ServerError",
    "SteepError",
    "Sweep",
    "TooLargeError",
    "UnreachableError",
    "ValidationError",
]

_RETRY_STATUSES = frozenset({502, 503, 504})
_MAX_RETRY_DELAY = 5.0
_LIST_PAGE_SIZE = 500


class Client:
    """A connection to one steep service.

    Connection errors and 502/503/504 responses are retried up to ``retries`` times
    with backoff. Submits of jobs and sweeps are retried with the same
    ``Idempotency-Key``, so a retry after a lost response never creates a second one.
    ``base_url`` defaults to the settings' (``STEEP_PUBLIC_URL``, or
    ``http://STEEP_HOST:STEEP_PORT``). ``api_key`` is sent as ``Authorization:
    Bearer``; without it, the key of the ``STEEP_API_KEY`` setting is sent, if set.
    ``transport`` replaces httpx's default transport (for tests, proxies or mounts).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = get_settings()
        base_url = base_url or settings.base_url
        if api_key is None and settings.api_key is not None:
            api_key = settings.api_key.get_secret_value()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )
        self.retries = retries

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request, retrying connection errors and 502/503/504; raise on 4xx and 5xx."""
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                if attempt == self.retries:
                    raise UnreachableError(
                        self.base_url, str(error) or type(error).__name__
                    ) from error
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == self.retries:
                    break
            time.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_DELAY)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            if not isinstance(problem, dict):
                problem = {"detail": str(problem)}
            raise error_for(response.status_code, problem)
        return response

    # Datasets ---------------------------------------------------------------------------

    def upload_dataset(
        self, path: str | Path, *, name: str | None = None, target: str | None = None
    ) -> dict[str, Any]:
        """Upload a CSV, NPZ or JSON file and return the dataset.

        ``target`` names the CSV's target column, or several comma-separated ones
        (default: the last column). Uploading the same bytes again returns the dataset
        stored the first time, so a retried upload never stores a copy.
        """
        dataset, _ = self.upload_dataset_with_status(path, name=name, target=target)
        return dataset

    def upload_dataset_with_status(
        self, path: str | Path, *, name: str | None = None, target: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Upload a file as ``upload_dataset`` does and return the dataset and whether it
        is new: True for a 201, False for a 200 when the same bytes were stored before."""
        path = Path(path)
        data = {key: value for key, value in (("name", name), ("target", target)) if value}
        with path.open("rb") as file:
            # httpx (0.29) seeks the file to 0 before sending, so a retry sends it all.
            response = self._request(
                "POST", "/v1/datasets", files={"file": (path.name, file)}, data=data
            )
        return dict(response.json()), response.status_code == 201

    def list_datasets(self, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """Return one page of datasets: ``{"items": [...], "next_cursor": ...}``."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return dict(self._request("GET", "/v1/datasets", params=params).json())

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/v1/datasets/{dataset_id}").json())

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete an uploaded dataset; a 409 while a queued or running job uses it."""
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # Jobs -------------------------------------------------------------------------------

    def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Submit a job spec and return the queued job."""
        key = idempotency_key or str(uuid.uuid4())
        response = self._request(
            "POST", "/v1/jobs", json=dict(spec), headers={"Idempotency-Key": key}
        )
        return Job.from_json(response.json())

    def get(self, job_id: str) -> Job:
        """Return the job with its transitions."""
        return Job.from_json(self._request("GET", f"/v1/jobs/{job_id}").json())

    def list_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        experiment: str | None = None,
        dataset: str | None = None,
        tags: Mapping[str, str] | None = None,
        sort: str = "-created_at",
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Job]:
        """Return one page of jobs that match every filter given.

        ``status`` keeps jobs with any of the statuses; ``tags`` keeps jobs with all
        of them. ``sort`` is created_at, finished_at or a metric name such as
        val_loss, with a leading "-" for descending order.
        """
        params: dict[str, Any] = {"sort": sort, "limit": limit}
        if status is not None:
            params["status"] = [status] if isinstance(status, str) else list(status)
        if experiment is not None:
            params["experiment"] = experiment
        if dataset is not None:
            params["dataset"] = dataset
        if tags:
            params["tag"] = [f"{key}:{value}" for key, value in tags.items()]
        if cursor is not None:
            params["cursor"] = cursor
        data = self._request("GET", "/v1/jobs", params=params).json()
        return Page.from_json(data, Job.from_json)

    def iter_jobs(self, **filters: Any) -> Iterator[Job]:
        """Yield every job that matches ``filters`` (those of ``list_jobs``), page by page."""
        cursor = None
        while True:
            page = self.list_jobs(**filters, limit=_LIST_PAGE_SIZE, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def wait(
        self,
        job_id: str,
        *,
        poll_seconds: float = 0.5,
        timeout: float | None = None,
        on_update: Callable[[Job], None] | None = None,
        progress: bool = False,
    ) -> Job:
        """Poll until the job finishes and return it; call ``on_update`` with each state.

        ``progress=True`` shows the epoch and the latest losses on stderr: a rich progress
        bar on a terminal, else a plain line every few seconds.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        if progress:
            from services.client_progress import job_progress

            with job_progress() as bar:
                return self._poll_job(job_id, poll_seconds, timeout, _chain(bar.update, on_update))
        return self._poll_job(job_id, poll_seconds, timeout, on_update)

    def _poll_job(
        self,
        job_id: str,
        poll_seconds: float,
        timeout: float | None,
        on_update: Callable[[Job], None] | None,
    ) -> Job:
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

    @overload
    def history(
        self,
        job_id: str,
        *,
        after_epoch: int | None = None,
        max_points: int | None = None,
        as_frame: Literal[False] = False,
    ) -> dict[str, list[Any]]: ...

    @overload
    def history(
        self,
        job_id: str,
        *,
        after_epoch: int | None = None,
        max_points: int | None = None,
        as_frame: Literal[True],
    ) -> Any: ...

    def history(
        self,
        job_id: str,
        *,
        after_epoch: int | None = None,
        max_points: int | None = None,
        as_frame: bool = False,
    ) -> Any:
        """Fetch the per-epoch history as columns (``{"epoch": [...], "train_loss": [...]}``).

        ``as_frame=True`` returns a pandas DataFrame indexed by epoch instead, and
        needs pandas installed. ``max_points`` downsamples long runs, keeping the
        first, the last, and the extremes of train_loss and val_loss.
        """
        params: dict[str, Any] = {}
        if after_epoch is not None:
            params["after_epoch"] = after_epoch
        if max_points is not None:
            params["max_points"] = max_points
        columns = dict(self._request("GET", f"/v1/jobs/{job_id}/history", params=params).json())
        if not as_frame:
            return columns
        try:
            import pandas
        except ImportError as error:
            raise ImportError(
                "history(as_frame=True) needs pandas; install it with `pip install pandas`, "
                "or call history() for plain columns"
            ) from error
        return pandas.DataFrame(columns).set_index("epoch")

    def weights(
        self,
        job_id: str,
        *,
        format: Literal["npz", "json"] = "npz",
        checkpoint: Literal["latest"] | None = None,
    ) -> bytes:
        """Download the trained parameter file: NPZ bytes, or JSON text encoded as UTF-8.

        ``checkpoint="latest"`` serves the latest checkpoint while the job runs.
        """
        params: dict[str, Any] = {"format": format}
        if checkpoint is not None:
            params["checkpoint"] = checkpoint
        return self._request("GET", f"/v1/jobs/{job_id}/weights", params=params).content

    def download_weights(
        self, job_id: str, path: str | Path, *, format: Literal["npz", "json"] | None = None
    ) -> Path:
        """Write the parameter file to ``path`` and return it.

        The format defaults to JSON for a ``.json`` path and NPZ otherwise.
        """
        path = Path(path)
        chosen = format or ("json" if path.suffix.lower() == ".json" else "npz")
        path.write_bytes(self.weights(job_id, format=chosen))
        return path

    def weight_arrays(self, job_id: str) -> dict[str, np.ndarray]:
        """Return the members of the job's NPZ parameter file as arrays, keyed by name."""
        import numpy as np

        with np.load(io.BytesIO(self.weights(job_id)), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}

    def load_model(self, job_id: str) -> Model:
        """Download the job's parameters and rebuild the model, to predict without the service."""
        from core.paramfile import load_model

        return load_model(self.weights(job_id))

    def predict(
        self, job_id: str, inputs: Sequence[Sequence[Any] | Mapping[str, Any]]
    ) -> Prediction:
        """Predict with the job's trained model on the service.

        Each row is a list of raw values in the dataset's column order, or a dict keyed
        by column name.
        """
        body = {"inputs": [row if isinstance(row, Mapping) else list(row) for row in inputs]}
        response = self._request("POST", f"/v1/jobs/{job_id}/predict", json=body)
        return Prediction.from_json(response.json())

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job, or ask a running one to stop; a ConflictError once finished."""
        return Job.from_json(self._request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def delete(self, job_id: str) -> None:
        """Delete a job that is not running, with its history and weights."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def trace(self, job_id: str, *, max_values: int | None = None) -> dict[str, Any]:
        """Return the job's first training step decomposed, as the API's JSON document.

        Arrays with more than ``max_values`` entries come as summaries.
        """
        params = {} if max_values is None else {"max_values": max_values}
        return dict(self._request("GET", f"/v1/jobs/{job_id}/trace", params=params).json())

    # Sweeps -----------------------------------------------------------------------------

    def submit_sweep(
        self, sweep: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Sweep:
        """Submit a sweep (``name``, ``base``, ``method``, ``parameters``, ...) and return it."""
        key = idempotency_key or str(uuid.uuid4())
        response = self._request(
            "POST", "/v1/sweeps", json=dict(sweep), headers={"Idempotency-Key": key}
        )
        return Sweep.from_json(response.json())

    def get_sweep(self, sweep_id: str) -> Sweep:
        """Return the sweep with its leaderboard and trials."""
        return Sweep.from_json(self._request("GET", f"/v1/sweeps/{sweep_id}").json())

    def list_sweeps(
        self,
        *,
        status: str | Sequence[str] | None = None,
        experiment: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Sweep]:
        """Return one page of sweeps, newest first, with their trial counts."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = [status] if isinstance(status, str) else list(status)
        if experiment is not None:
            params["experiment"] = experiment
        if cursor is not None:
            params["cursor"] = cursor
        data = self._request("GET", "/v1/sweeps", params=params).json()
        return Page.from_json(data, Sweep.from_json)

    def leaderboard(self, sweep_id: str) -> list[LeaderboardEntry]:
        """Return the sweep's trials with an objective value, best first."""
        return self.get_sweep(sweep_id).leaderboard

    def wait_sweep(
        self,
        sweep_id: str,
        *,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
        on_update: Callable[[Sweep], None] | None = None,
    ) -> Sweep:
        """Poll until the sweep ends and return it; call ``on_update`` with each state.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.get_sweep(sweep_id)
            if on_update is not None:
                on_update(sweep)
            if sweep.finished:
                return sweep
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} is still {sweep.status} after {timeout} s")
            time.sleep(poll_seconds)

    def cancel_sweep(self, sweep_id: str) -> Sweep:
        """Start no more trials and cancel the running ones; a ConflictError once ended."""
        return Sweep.from_json(self._request("POST", f"/v1/sweeps/{sweep_id}/cancel").json())

    # Experiments ------------------------------------------------------------------------

    def list_experiments(self, *, limit: int = 50, cursor: str | None = None) -> Page[Experiment]:
        """Return one page of experiments with job counts and the best job of each."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        data = self._request("GET", "/v1/experiments", params=params).json()
        return Page.from_json(data, Experiment.from_json)


def _chain(
    first: Callable[[Job], None], second: Callable[[Job], None] | None
) -> Callable[[Job], None]:
    if second is None:
        return first

    def both(job: Job) -> None:
        first(job)
        second(job)

    return both
