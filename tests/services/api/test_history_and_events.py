"""GET /v1/jobs/{id}/history (columns, after_epoch, max_points, ETag) and the SSE stream."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.worker.runner import run_job
from tests.services.api.conftest import Train, assert_problem, submit

MOONS_SPEC: dict[str, Any] = {
    "dataset": "builtin:moons",
    "model": {
        "layers": [
            {"type": "dense", "units": 8, "activation": "tanh"},
            {"type": "dense", "units": 2},
        ]
    },
    "optimizer": {"type": "sgd", "lr": 0.5, "momentum": 0.9},
    "training": {"epochs": 60, "batch_size": 100, "validation_split": 0.2, "seed": 3},
}

IRIS_SHORT: dict[str, Any] = {
    "dataset": "builtin:iris",
    "model": {"layers": [{"type": "dense", "units": 3}]},
    "optimizer": {"type": "adam", "lr": 0.05},
    "training": {"epochs": 5, "batch_size": 50},
}


@pytest.fixture
def moons_job(client: TestClient, train: Train) -> str:
    """The id of a finished 60-epoch job with a noisy loss."""
    job = submit(client, MOONS_SPEC)
    assert train(job["id"]) == "succeeded"
    return str(job["id"])


def test_history_after_epoch_returns_newer_epochs(client: TestClient, moons_job: str) -> None:
    """after_epoch=N returns epochs N+1 onwards, aligned with the full history."""
    full = client.get(f"/v1/jobs/{moons_job}/history").json()

    newer = client.get(f"/v1/jobs/{moons_job}/history", params={"after_epoch": 55}).json()

    assert newer["epoch"] == [56, 57, 58, 59, 60]
    assert newer["val_loss"] == full["val_loss"][55:]
    assert set(newer) == set(full)


def test_history_after_last_epoch_keeps_columns(client: TestClient, moons_job: str) -> None:
    """after_epoch at or past the last epoch returns every column, each empty."""
    full = client.get(f"/v1/jobs/{moons_job}/history").json()

    for after_epoch in (60, 1000):
        empty = client.get(f"/v1/jobs/{moons_job}/history", params={"after_epoch": after_epoch})

        assert set(empty.json()) == set(full)
        assert all(values == [] for values in empty.json().values())


def test_history_max_points_keeps_extremes(client: TestClient, moons_job: str) -> None:
    """max_points keeps at most M epochs: the first, the last, and both losses' extremes."""
    full = client.get(f"/v1/jobs/{moons_job}/history").json()

    for max_points in (6, 7, 10, 25):
        sampled = client.get(
            f"/v1/jobs/{moons_job}/history", params={"max_points": max_points}
        ).json()

        assert len(sampled["epoch"]) <= max_points
        assert sampled["epoch"] == sorted(set(sampled["epoch"]))
        assert sampled["epoch"][0] == 1
        assert sampled["epoch"][-1] == 60
        for name in ("train_loss", "val_loss"):
            assert min(full[name]) in sampled[name], (name, max_points)
            assert max(full[name]) in sampled[name], (name, max_points)
        for name, values in sampled.items():
            assert len(values) == len(sampled["epoch"]), name


def test_history_max_points_above_length_returns_all(client: TestClient, moons_job: str) -> None:
    """A max_points above the number of epochs changes nothing."""
    full = client.get(f"/v1/jobs/{moons_job}/history").json()

    sampled = client.get(f"/v1/jobs/{moons_job}/history", params={"max_points": 500}).json()

    assert sampled == full


def test_history_max_points_below_minimum_is_rejected(client: TestClient) -> None:
    """max_points below 6 cannot keep first, last and both extremes, so it is a 422."""
    job = submit(client, IRIS_SHORT)

    response = client.get(f"/v1/jobs/{job['id']}/history", params={"max_points": 3})

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["query", "max_points"]
    assert "max_points must be at least 6 (the first and last epoch" in problem["detail"]


def test_history_etag_gives_304_until_the_job_changes(client: TestClient, train: Train) -> None:
    """If-None-Match with the current ETag is a 304; once the job trains it is a 200."""
    job = submit(client, IRIS_SHORT)
    url = f"/v1/jobs/{job['id']}/history"
    empty = client.get(url)
    etag = empty.headers["etag"]

    unchanged = client.get(url, headers={"If-None-Match": etag})
    other_query = client.get(url, params={"after_epoch": 2}, headers={"If-None-Match": etag})
    train(job["id"])
    changed = client.get(url, headers={"If-None-Match": etag})
    current = client.get(url, headers={"If-None-Match": f'"x", W/{changed.headers["etag"]}'})

    assert empty.json() == {"epoch": []}
    assert unchanged.status_code == 304
    assert unchanged.headers["etag"] == etag
    assert other_query.status_code == 200
    assert changed.status_code == 200
    assert changed.json()["epoch"] == [1, 2, 3, 4, 5]
    assert changed.headers["etag"] != etag
    assert current.status_code == 304


def _read_events(client: TestClient, job_id: str, last_event_id: str | None = None) -> list[dict]:
    """Read the job's event stream to its end; return each event's id, name and data."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                current = {}
                continue
            field, _, value = line.partition(": ")
            if field == "data":
                current["data"] = json.loads(value)
            elif field in ("id", "event"):
                current[field] = value
    return events


def test_events_stream_each_epoch_and_status(client: TestClient, train: Train) -> None:
    """A finished job's stream has queued, running, one progress per epoch, then succeeded."""
    job = submit(client, IRIS_SHORT)
    train(job["id"])

    events = _read_events(client, job["id"])

    assert [event["event"] for event in events] == ["status"] * 2 + ["progress"] * 5 + ["status"]
    assert [event["data"]["status"] for event in events if event["event"] == "status"] == [
        "queued",
        "running",
        "succeeded",
    ]
    progress = [event["data"] for event in events if event["event"] == "progress"]
    assert [record["epoch"] for record in progress] == [1, 2, 3, 4, 5]
    assert all("train_loss" in record for record in progress)
    assert events[-1]["data"]["stop_reason"] == "completed"
    ids = [event["id"] for event in events]
    assert len(set(ids)) == len(ids)


def test_events_resume_from_last_event_id(client: TestClient, train: Train) -> None:
    """Reconnecting with Last-Event-ID sends only what came after it, without repeats."""
    job = submit(client, IRIS_SHORT)
    train(job["id"])
    events = _read_events(client, job["id"])
    third_epoch = next(e for e in events if e["event"] == "progress" and e["data"]["epoch"] == 3)

    resumed = _read_events(client, job["id"], last_event_id=third_epoch["id"])
    after_end = _read_events(client, job["id"], last_event_id=events[-1]["id"])

    assert [e["data"].get("epoch") for e in resumed] == [4, 5, None]
    assert resumed[-1]["data"]["status"] == "succeeded"
    assert resumed == events[-3:]
    assert after_end == []


def test_events_follow_a_running_job(client: TestClient, configure: Any) -> None:
    """A stream opened while the job trains delivers every epoch once, in order, then ends."""
    # Checkpoints every epoch would make each epoch a transaction; flushes alone batch them.
    settings = configure(checkpoint_interval_seconds=60.0)
    spec = {**IRIS_SHORT, "training": {"epochs": 300, "batch_size": 150}}
    job = submit(client, spec)
    worker = threading.Thread(
        target=run_job, args=(job["id"],), kwargs={"worker_id": "test", "settings": settings}
    )
    worker.start()
    try:
        events = _read_events(client, job["id"])
    finally:
        worker.join(timeout=60)

    epochs = [event["data"]["epoch"] for event in events if event["event"] == "progress"]
    assert epochs == list(range(1, 301))
    assert events[-1]["event"] == "status"
    assert events[-1]["data"]["status"] == "succeeded"


def test_events_reject_malformed_last_event_id(client: TestClient) -> None:
    """A Last-Event-ID this stream never sent is a 422 naming the header."""
    job = submit(client, IRIS_SHORT)

    response = client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "abc"})

    problem = assert_problem(response, 422)
    assert "Last-Event-ID" in problem["detail"]
