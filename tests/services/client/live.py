"""A steep service inside the test process: the API on uvicorn, workers and the sweeper.

The API listens on 127.0.0.1 on a free port. Enqueued jobs run in a pool of
threads through the worker's ``run_job``, as Celery workers would run them, and a
sweeper thread advances the sweeps. The database and the settings are those of the
test's mode (``tests/services/conftest.py``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from services.api.app import create_app
from services.settings import Settings
from services.worker.runner import run_job
from services.worker.sweeper import run_sweeper

IRIS_SPEC: dict[str, Any] = {
    "name": "iris-mlp",
    "experiment": "iris",
    "tags": {"team": "tests"},
    "dataset": "builtin:iris",
    "model": {
        "layers": [
            {"type": "dense", "units": 8, "activation": "relu"},
            {"type": "dense", "units": 3},
        ]
    },
    "optimizer": {"type": "adam", "lr": 0.02},
    "training": {"epochs": 8, "batch_size": 16, "validation_split": 0.2, "seed": 1},
    "preprocessing": {"standardize": True},
}


@dataclass
class InlineWorkers:
    """An enqueue function that runs each job in a thread pool, like a pool of workers."""

    settings: Settings
    max_workers: int = 3
    enqueued: list[str] = field(default_factory=list)
    _futures: list[Future[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="inline-worker")

    def __call__(self, job_id: str) -> bool:
        self.enqueued.append(job_id)
        worker_id = f"inline-worker-{len(self.enqueued)}"
        self._futures.append(
            self._pool.submit(run_job, job_id, worker_id=worker_id, settings=self.settings)
        )
        return True

    def join(self) -> None:
        """Wait for every job enqueued so far, and raise the first error of a run."""
        for future in list(self._futures):
            future.result(timeout=60)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class LiveService:
    url: str
    settings: Settings
    workers: InlineWorkers

    @property
    def api_key(self) -> str | None:
        """The key of the tenant ``local`` that the ``configure`` fixture created."""
        key = self.settings.api_key
        return key.get_secret_value() if key else None


@contextmanager
def live_service(
    settings: Settings, *, max_workers: int = 3, sweeper: bool = True
) -> Iterator[LiveService]:
    """Run the API, inline workers and (with ``sweeper``) the sweeper until the block ends."""
    workers = InlineWorkers(settings, max_workers)
    app = create_app(settings)
    app.state.enqueue = workers
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server_thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    server_thread.start()
    stop_sweeper = threading.Event()
    sweeper_thread = threading.Thread(
        target=run_sweeper,
        args=(settings, stop_sweeper),
        kwargs={"enqueue": workers, "interval_seconds": 0.1},
    )
    if sweeper:
        sweeper_thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the test API server did not start in 10 s"
            time.sleep(0.01)
        yield LiveService(url=f"http://127.0.0.1:{port}", settings=settings, workers=workers)
    finally:
        stop_sweeper.set()
        if sweeper:
            sweeper_thread.join()
        server.should_exit = True
        server_thread.join()
        listener.close()
        workers.close()
