"""Sweeps: trials from grids and seeded samples, validation at submit, max_parallel, and
the early-stopping rules, on both the embedded and the distributed database."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from services.api.app import create_app
from services.client import Client
from services.settings import Settings
from services.store.db import session_scope
from services.store.models import Job, Transition
from services.worker.runner import run_job
from services.worker.sweeper import advance_sweeps
from tests.services.auth import client_for
from tests.services.client.live import IRIS_SPEC, live_service
from tests.services.conftest import Configure
from tests.services.enqueue import RecordingEnqueue


@pytest.fixture
def enqueue() -> RecordingEnqueue:
    return RecordingEnqueue()


@pytest.fixture
def client(settings: Settings, enqueue: RecordingEnqueue) -> Iterator[TestClient]:
    app = create_app(settings)
    app.state.enqueue = enqueue
    with client_for(app) as test_client:
        yield test_client


def submit_sweep(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 202, response.text
    sweep: dict[str, Any] = response.json()
    return sweep


def run_sweep_to_end(settings: Settings, enqueue: RecordingEnqueue) -> None:
    """Train the enqueued trials one by one and advance the sweep until it ends."""
    for _ in range(100):
        queued = enqueue.take()
        for job_id in queued:
            assert run_job(job_id, worker_id="test-worker", settings=settings) == "succeeded"
        report = advance_sweeps(settings, enqueue=enqueue)
        assert report.errors == []
        if report.finished:
            return
    raise AssertionError("the sweep did not end after 100 sweeper passes")


def sweep_jobs(settings: Settings, sweep_id: str) -> list[Job]:
    with session_scope(settings.resolved_database_url, write=False) as session:
        return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id)))


def test_grid_makes_every_combination(
    client: TestClient, settings: Settings, enqueue: RecordingEnqueue
) -> None:
    """A 3x2 grid makes six jobs with exactly the six combinations, ranked by val_loss."""
    body = {
        "name": "grid",
        "base": IRIS_SPEC,
        "parameters": {
            "optimizer.lr": {"values": [0.1, 0.01, 0.001]},
            "model.layers.0.units": {"values": [4, 8]},
        },
        "max_parallel": 2,
    }

    sweep = submit_sweep(client, body)
    started_at_submit = list(enqueue.sent)
    run_sweep_to_end(settings, enqueue)
    detail = client.get(f"/v1/sweeps/{sweep['id']}").json()
    jobs = sweep_jobs(settings, sweep["id"])

    assert len(started_at_submit) == 2
    combinations = {
        (job.spec["optimizer"]["lr"], job.spec["model"]["layers"][0]["units"]) for job in jobs
    }
    assert len(jobs) == 6
    assert combinations == set(itertools.product([0.1, 0.01, 0.001], [4, 8]))
    assert [trial["parameters"] for trial in detail["trials"][:2]] == [
        {"optimizer.lr": 0.1, "model.layers.0.units": 4},
        {"optimizer.lr": 0.1, "model.layers.0.units": 8},
    ]
    assert all(job.tags["sweep"] == sweep["id"] for job in jobs)
    assert detail["status"] == "succeeded"
    assert detail["counts"] == {"succeeded": 6}
    values = [entry["value"] for entry in detail["leaderboard"]]
    assert values == sorted(values)
    assert [entry["rank"] for entry in detail["leaderboard"]] == [1, 2, 3, 4, 5, 6]


def test_random_sweep_with_seed_repeats(client: TestClient) -> None:
    """A random sweep with a seed makes the same trials every time, inside the ranges."""
    body = {
        "base": IRIS_SPEC,
        "method": "random",
        "n_trials": 8,
        "seed": 7,
        "parameters": {
            "optimizer.lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-1},
            "model.layers.0.units": {"distribution": "int_uniform", "min": 2, "max": 16},
            "optimizer.type": {"values": ["adam", "adamw"]},
            "training.validation_split": {"distribution": "uniform", "min": 0.1, "max": 0.3},
        },
        "max_parallel": 1,
    }

    first = submit_sweep(client, body)
    second = submit_sweep(client, body)
    other = submit_sweep(client, {**body, "seed": 8})
    unseeded = submit_sweep(client, {**body, "seed": None})

    trials = [trial["parameters"] for trial in first["trials"]]
    assert trials == [trial["parameters"] for trial in second["trials"]]
    assert trials != [trial["parameters"] for trial in other["trials"]]
    assert first["seed"] == 7
    assert isinstance(unseeded["seed"], int)
    for values in trials:
        assert 1e-4 <= values["optimizer.lr"] <= 1e-1
        assert isinstance(values["model.layers.0.units"], int)
        assert 2 <= values["model.layers.0.units"] <= 16
        assert values["optimizer.type"] in ("adam", "adamw")
        assert 0.1 <= values["training.validation_split"] <= 0.3


@pytest.mark.parametrize(
    ("parameters", "extra", "loc", "words"),
    [
        ({"optimizer.lrr": {"values": [0.1]}}, {}, "optimizer.lrr", ["has no field 'lrr'"]),
        (
            {"optimizer.lr": {"values": [0.1, 20.0]}},
            {},
            "optimizer.lr",
            ["trial 1", "optimizer.lr = 20.0", "less than or equal to 10"],
        ),
        (
            {"model.layers.1.units": {"values": [3, 5]}},
            {},
            "model.layers.1.units",
            ["trial 1", "set units to 3"],
        ),
        (
            {"model.layers.5.units": {"values": [3]}},
            {},
            "model.layers.5.units",
            ["not a valid index"],
        ),
        (
            {"optimizer.lr": {"distribution": "uniform", "min": 0.1, "max": 0.2}},
            {},
            None,
            ["a grid needs a list of values"],
        ),
        (
            {"optimizer.lr": {"distribution": "log_uniform", "min": 0, "max": 0.2}},
            {"method": "random", "n_trials": 2},
            None,
            ["log_uniform needs min > 0"],
        ),
        ({"optimizer.lr": {"values": [0.1]}}, {"method": "random"}, None, ["needs n_trials"]),
    ],
)
def test_invalid_sweep_is_422(
    client: TestClient,
    parameters: dict[str, Any],
    extra: dict[str, Any],
    loc: str | None,
    words: list[str],
) -> None:
    """A sweep whose parameters or trials are invalid is a 422 naming the parameter."""
    response = client.post(
        "/v1/sweeps", json={"base": IRIS_SPEC, "parameters": parameters, **extra}
    )

    assert response.status_code == 422, response.text
    problem = response.json()
    for word in words:
        assert word in problem["detail"]
    if loc is not None:
        assert problem["errors"][0]["loc"] == ["body", "parameters", loc]


def test_too_many_trials_is_422(configure: Configure, enqueue: RecordingEnqueue) -> None:
    """A sweep with more trials than max_sweep_trials is a 422 that gives the limit."""
    settings = configure(max_sweep_trials=5)
    app = create_app(settings)
    app.state.enqueue = enqueue
    body = {"base": IRIS_SPEC, "parameters": {"optimizer.lr": {"values": [0.1, 0.2, 0.3]}}}

    with client_for(app) as client:
        grid = client.post(
            "/v1/sweeps",
            json={
                **body,
                "parameters": {**body["parameters"], "training.seed": {"values": [1, 2]}},
            },
        )
        random = client.post("/v1/sweeps", json={**body, "method": "random", "n_trials": 6})

    assert grid.status_code == 422
    assert (
        "6 trials, above this server's limit of 5 (STEEP_MAX_SWEEP_TRIALS)" in grid.json()["detail"]
    )
    assert random.status_code == 422
    assert random.json()["errors"][0]["loc"] == ["body", "n_trials"]
    assert enqueue.sent == []


def test_max_parallel_two_never_runs_three(settings: Settings) -> None:
    """With max_parallel 2 and three workers, no three trials ever run at the same time."""
    spec = {**IRIS_SPEC, "training": {**IRIS_SPEC["training"], "epochs": 40, "batch_size": 4}}
    body = {
        "base": spec,
        "parameters": {"optimizer.lr": {"values": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}},
        "max_parallel": 2,
    }
    with (
        live_service(settings, max_workers=3) as service,
        Client(service.url, service.api_key) as steep,
    ):
        sweep = steep.submit_sweep(body)
        ended = steep.wait_sweep(sweep.id, poll_seconds=0.1, timeout=90)

    intervals = []
    with session_scope(settings.resolved_database_url, write=False) as session:
        for job in session.scalars(select(Job).where(Job.sweep_id == sweep.id)):
            changes = list(
                session.scalars(
                    select(Transition).where(Transition.job_id == job.id).order_by(Transition.id)
                )
            )
            started = next(change.at for change in changes if change.status == "running")
            intervals.append((started, changes[-1].at))
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most_running = 0
    for _, change in events:
        running += change
        most_running = max(most_running, running)

    assert ended.status == "succeeded"
    assert ended.counts == {"succeeded": 6}
    assert len(intervals) == 6
    assert most_running <= 2


def test_two_sweepers_do_not_overshoot(
    client: TestClient, settings: Settings, enqueue: RecordingEnqueue
) -> None:
    """Two sweepers advancing at once never leave more than max_parallel jobs active."""
    body = {
        "base": IRIS_SPEC,
        "parameters": {"optimizer.lr": {"values": [0.001 * (i + 1) for i in range(12)]}},
        "max_parallel": 3,
    }
    sweep = submit_sweep(client, body)
    active_counts = []

    for _ in range(5):
        with session_scope(settings.resolved_database_url) as session:
            session.execute(
                update(Job)
                .where(Job.sweep_id == sweep["id"], Job.status == "queued")
                .values(status="succeeded", finished_at=func.now())
            )
        threads = [
            threading.Thread(target=advance_sweeps, args=(settings,), kwargs={"enqueue": enqueue})
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with session_scope(settings.resolved_database_url, write=False) as session:
            active_counts.append(
                session.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.sweep_id == sweep["id"], Job.status == "queued")
                )
            )

    assert active_counts[:3] == [3, 3, 3]
    assert max(active_counts) == 3
    assert len(sweep_jobs(settings, sweep["id"])) == 12


def test_cancel_sweep_stops_starting_trials(
    client: TestClient, settings: Settings, enqueue: RecordingEnqueue
) -> None:
    """A cancelled sweep cancels its queued trials and starts no more; a second cancel is 409."""
    body = {
        "base": IRIS_SPEC,
        "parameters": {"optimizer.lr": {"values": [0.01, 0.02, 0.03]}},
        "max_parallel": 1,
    }
    sweep = submit_sweep(client, body)

    cancelled = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    report = advance_sweeps(settings, enqueue=enqueue)
    again = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    missing = client.post("/v1/sweeps/no-such-sweep/cancel")

    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["counts"] == {"cancelled": 3}
    assert report.started == []
    assert again.status_code == 409
    assert missing.status_code == 404


def test_cancelled_sweep_keeps_leaderboard(
    client: TestClient, settings: Settings, enqueue: RecordingEnqueue
) -> None:
    """A trial cancelled with its sweep still ranks on the leaderboard with what it reached."""
    spec = {**IRIS_SPEC, "training": {**IRIS_SPEC["training"], "epochs": 2000, "batch_size": 8}}
    body = {"base": spec, "parameters": {"optimizer.lr": {"values": [0.01]}}, "max_parallel": 1}
    sweep = submit_sweep(client, body)
    job_id = sweep["trials"][0]["job_id"]
    outcome: list[str] = []
    worker = threading.Thread(
        target=lambda: outcome.append(run_job(job_id, worker_id="test-worker", settings=settings))
    )
    worker.start()
    deadline = time.monotonic() + 60
    while client.get(f"/v1/jobs/{job_id}").json()["progress"]["epoch"] < 3:
        assert time.monotonic() < deadline, "the trial did not reach epoch 3 in 60 s"
        time.sleep(0.05)

    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 202
    worker.join(timeout=60)
    detail = client.get(f"/v1/sweeps/{sweep['id']}").json()

    assert outcome == ["cancelled"]
    (entry,) = detail["leaderboard"]
    assert entry["job_id"] == job_id
    assert entry["status"] == "cancelled"
    assert entry["value"] is not None
    assert detail["trials"][0]["value"] == entry["value"]


def test_median_rule_stops_clearly_worse_trial(
    client: TestClient, settings: Settings, enqueue: RecordingEnqueue
) -> None:
    """A trial with a tiny lr is stopped by the median rule, with a message saying why."""
    spec = {**IRIS_SPEC, "training": {**IRIS_SPEC["training"], "epochs": 60, "batch_size": 8}}
    body = {
        "base": spec,
        "parameters": {"optimizer.lr": {"values": [0.05, 0.04, 0.03, 1e-6]}},
        "max_parallel": 4,
        "early_stopping": {"rule": "median", "grace_epochs": 3, "min_trials": 3},
    }
    sweep = submit_sweep(client, body)
    jobs = {trial["parameters"]["optimizer.lr"]: trial["job_id"] for trial in sweep["trials"]}
    for lr in (0.05, 0.04, 0.03):
        assert run_job(jobs[lr], worker_id="test-worker", settings=settings) == "succeeded"
    stop = threading.Event()

    def sweep_until_stopped() -> None:
        while not stop.is_set():
            advance_sweeps(settings, enqueue=enqueue)
            time.sleep(0.02)

    sweeper = threading.Thread(target=sweep_until_stopped)
    sweeper.start()
    try:
        status = run_job(jobs[1e-6], worker_id="test-worker", settings=settings)
    finally:
        stop.set()
        sweeper.join()
    slow = client.get(f"/v1/jobs/{jobs[1e-6]}").json()
    detail = client.get(f"/v1/sweeps/{sweep['id']}").json()
    with session_scope(settings.resolved_database_url, write=False) as session:
        row = session.get(Job, jobs[1e-6])
        assert row is not None

    assert row.stop_request == "early_stopped"
    assert row.stop_request_message == slow["stop_message"]
    assert status == "succeeded"
    assert slow["stop_reason"] == "early_stopped"
    assert slow["stop_message"].startswith("median stopping rule at epoch ")
    assert "best val_loss" in slow["stop_message"]
    assert "of the running averages of 3 other trials" in slow["stop_message"]
    assert slow["progress"]["epoch"] < 60
    stopped = [trial for trial in detail["trials"] if trial["stop_reason"] == "early_stopped"]
    assert [trial["parameters"]["optimizer.lr"] for trial in stopped] == [1e-6]
