"""A real digits job over HTTP: accuracy, history, weights files and predictions."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import core
from core.paramfile import load_model
from tests.services.api.conftest import TEA_SPEC, Train, assert_problem, submit

DIGITS_SPEC: dict[str, Any] = {
    "name": "digits-mlp",
    "experiment": "digits",
    "tags": {"team": "vision"},
    "dataset": "builtin:digits",
    "model": {
        "layers": [
            {"type": "dense", "units": 64, "activation": "relu"},
            {"type": "dense", "units": 10},
        ]
    },
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.001},
    "training": {"epochs": 30, "batch_size": 64, "seed": 0, "validation_split": 0.2},
    "preprocessing": {"standardize": True},
}


@pytest.fixture
def digits_job(client: TestClient, train: Train) -> dict[str, Any]:
    """A digits job trained to the end."""
    job = submit(client, DIGITS_SPEC)
    assert train(job["id"]) == "succeeded"
    return client.get(f"/v1/jobs/{job['id']}").json()


def test_digits_job_reaches_accuracy(client: TestClient, digits_job: dict[str, Any]) -> None:
    """30 epochs of a 64-unit MLP reach 95% validation accuracy, one history row per epoch."""
    history = client.get(f"/v1/jobs/{digits_job['id']}/history").json()

    assert digits_job["status"] == "succeeded"
    assert digits_job["metrics"]["val_accuracy"] >= 0.95
    assert digits_job["n_parameters"] == 64 * 64 + 64 + 64 * 10 + 10
    assert history["epoch"] == list(range(1, 31))
    for name in ("train_loss", "val_loss", "val_accuracy", "grad_norm.dense_0", "lr"):
        assert len(history[name]) == 30, name
    assert history["val_accuracy"][-1] == digits_job["metrics"]["val_accuracy"]


def test_npz_weights_predict_like_the_service(
    client: TestClient, digits_job: dict[str, Any]
) -> None:
    """The NPZ file loads without pickle, and a local model from it predicts as the API does."""
    digits = core.load_builtin("digits")
    rows = digits.x[:25]

    response = client.get(f"/v1/jobs/{digits_job['id']}/weights", params={"format": "npz"})
    prediction = client.post(
        f"/v1/jobs/{digits_job['id']}/predict", json={"inputs": rows.tolist()}
    ).json()

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert f"{digits_job['id']}.npz" in response.headers["content-disposition"]
    with np.load(io.BytesIO(response.content), allow_pickle=False) as archive:
        assert archive["dense_0.weight"].shape == (64, 64)
    local = load_model(response.content)
    assert prediction["predictions"] == local.predict(rows).tolist()
    assert np.array(prediction["outputs"]).shape == (25, 10)
    np.testing.assert_array_equal(prediction["outputs"], local.predict_outputs(rows))
    labels = np.array(digits.classes)[digits.y[:25]]
    assert np.mean(np.array(prediction["predictions"]) == labels) >= 0.9


def test_json_weights_match_npz(client: TestClient, train: Train) -> None:
    """The JSON file contains the same parameters as the NPZ file, and loads as a model."""
    job = submit(client, {**DIGITS_SPEC, "training": {**DIGITS_SPEC["training"], "epochs": 2}})
    train(job["id"])
    url = f"/v1/jobs/{job['id']}/weights"

    npz = load_model(client.get(url).content)
    as_json = client.get(url, params={"format": "json"})

    assert as_json.headers["content-type"].startswith("application/json")
    from_json = load_model(as_json.json())
    for name, value in npz.parameters().items():
        np.testing.assert_array_equal(from_json.parameters()[name], value)


def test_predict_rejects_wrong_width(client: TestClient, train: Train) -> None:
    """A row with the wrong number of values is a 422 naming the row and n_features."""
    job = submit(client, TEA_SPEC)
    train(job["id"])
    rows = [[1.0], [1.0, 2.0]]

    response = client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": rows})

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "inputs", 1]
    assert "inputs[1] has 2 values" in problem["detail"]
    assert "n_features=1" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": [["a"]]}, "inputs"),
        ({"inputs": [[1.0]], "rows": [[1.0]]}, "rows"),
    ],
)
def test_predict_rejects_bad_body(client: TestClient, body: dict[str, Any], field: str) -> None:
    """Empty, non-numeric or unknown fields are 422s naming the field."""
    job = submit(client, TEA_SPEC)

    response = client.post(f"/v1/jobs/{job['id']}/predict", json=body)

    problem = assert_problem(response, 422)
    assert field in problem["errors"][0]["loc"]


def test_predict_and_weights_before_training_conflict(client: TestClient) -> None:
    """A queued job has no weights, so predict and weights are 409s naming the next step."""
    job = submit(client, TEA_SPEC)

    weights = client.get(f"/v1/jobs/{job['id']}/weights")
    latest = client.get(f"/v1/jobs/{job['id']}/weights", params={"checkpoint": "latest"})
    prediction = client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[2.0]]})

    assert "checkpoint=latest" in assert_problem(weights, 409)["detail"]
    assert "no checkpoint yet" in assert_problem(latest, 409)["detail"]
    assert "no weights yet" in assert_problem(prediction, 409)["detail"]


def test_tea_predict_returns_regression_values(client: TestClient, train: Train) -> None:
    """Regression predictions are the network's values: 0.86 * x for the one-weight model."""
    job = submit(client, TEA_SPEC)
    train(job["id"])

    response = client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[2.0], [1.0]]})

    assert response.status_code == 200
    assert response.json() == {"outputs": [[1.72], [0.86]], "predictions": [1.72, 0.86]}


def test_running_job_serves_latest_checkpoint_and_cancels(client: TestClient, train: Train) -> None:
    """While a job runs, checkpoint=latest serves its parameters; cancel then stops it."""
    spec = {**TEA_SPEC, "training": {**TEA_SPEC["training"], "epochs": 100_000}}
    spec["optimizer"] = {"type": "sgd", "lr": 0.001}
    job = submit(client, spec)
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(train(job["id"])))
    worker.start()
    try:
        response = _wait_for_checkpoint(client, job["id"])
        model = load_model(response.json())
        running = client.get(f"/v1/jobs/{job['id']}").json()

        cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
    finally:
        worker.join(timeout=30)

    assert running["status"] == "running"
    assert 0.5 < model.parameters()["dense_0.weight"][0, 0] <= 5.0
    assert cancelled.status_code == 202
    assert cancelled.json()["cancel_requested"] is True
    assert outcome == ["cancelled"]
    final = client.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "cancelled"
    assert final["stop_reason"] == "cancelled"
    assert client.get(f"/v1/jobs/{job['id']}/weights").status_code == 200


def _wait_for_checkpoint(client: TestClient, job_id: str) -> Any:
    url = f"/v1/jobs/{job_id}/weights"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = client.get(url, params={"checkpoint": "latest", "format": "json"})
        if response.status_code == 200:
            json.loads(response.text)
            return response
        assert response.status_code == 409, response.text
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} wrote no checkpoint within 20 s")


def test_failed_job_serves_no_model(client: TestClient, train: Train) -> None:
    """A diverged job's stored parameters are not a trained model: weights and predict are
    409s that give the stop reason, and the job's failure stays readable. It keeps its
    latest checkpoint, the state before the failure, and checkpoint=latest serves it."""
    spec = {
        **TEA_SPEC,
        "optimizer": {"type": "sgd", "lr": 10.0},
        "training": {**TEA_SPEC["training"], "epochs": 500, "dtype": "float32"},
    }
    job = submit(client, spec)
    assert train(job["id"]) == "failed"
    failed = client.get(f"/v1/jobs/{job['id']}").json()

    for path in (f"/v1/jobs/{job['id']}/weights", f"/v1/jobs/{job['id']}/weights?format=json"):
        problem = assert_problem(client.get(path), 409)
        assert "diverged" in problem["detail"]
        assert "checkpoint=latest" in problem["detail"]
    latest = client.get(f"/v1/jobs/{job['id']}/weights?checkpoint=latest&format=json")
    assert latest.status_code == 200, latest.text
    assert set(latest.json()["parameters"]) == {"dense_0.weight"}
    predicted = client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[2.0]]})
    assert "no trained model" in assert_problem(predicted, 409)["detail"]
    assert failed["stop_reason"] == "diverged"


def test_job_failed_in_first_epoch_has_no_checkpoint(client: TestClient, train: Train) -> None:
    """A job that diverges before its first epoch ends took no checkpoint, and
    the 409 for checkpoint=latest reports that instead of suggesting it was deleted."""
    spec = {
        "dataset": "builtin:diabetes",
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "optimizer": {"type": "sgd", "lr": 10.0},
        "training": {"epochs": 5, "batch_size": 16},
    }
    job = submit(client, spec)
    assert train(job["id"]) == "failed"

    latest = client.get(f"/v1/jobs/{job['id']}/weights?checkpoint=latest")

    detail = assert_problem(latest, 409)["detail"]
    assert "failed (diverged) before its first checkpoint was written" in detail
    weights = assert_problem(client.get(f"/v1/jobs/{job['id']}/weights"), 409)["detail"]
    assert "checkpoint=latest" not in weights


def test_predict_value_beyond_float32_is_422(client: TestClient, train: Train) -> None:
    """1e308 is finite in JSON but not in a float32 model: a 422 naming the value."""
    spec = {**TEA_SPEC, "training": {**TEA_SPEC["training"], "dtype": "float32"}}
    job = submit(client, spec)
    assert train(job["id"]) == "succeeded"

    response = client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1e308]]})

    problem = assert_problem(response, 422)
    assert "inputs[0][0]" in problem["detail"]
    assert "1e+308" in problem["detail"]
    assert "float32" in problem["detail"]


def test_predict_missing_value_dotted_location(client: TestClient, train: Train) -> None:
    """A null in an object row is named as the API's locations are, ``inputs[0].name``."""
    job = submit(client, TEA_SPEC)
    assert train(job["id"]) == "succeeded"
    (column,) = [item["name"] for item in client.get("/v1/datasets/builtin:tea").json()["columns"]]

    response = client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [{column: None}]})

    problem = assert_problem(response, 422)
    assert problem["detail"].startswith(f"inputs[0].{column} (column '{column}') is missing")
    assert problem["errors"][0]["loc"] == ["body", "inputs", 0, column]
