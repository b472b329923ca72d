"""POST /v1/jobs: the one-weight example end to end, idempotency, and rejected specs."""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.network import Network
from core.spec import parse_spec
from services import jobs
from services.api.app import create_app
from services.jobs import count_parameters
from services.settings import Settings
from tests.services.api.conftest import IRIS_SPEC, TEA_SPEC, Train, assert_problem, submit
from tests.services.auth import client_for


def test_tea_job_trains_to_the_worked_example(client: TestClient, train: Train) -> None:
    """The one-weight spec records loss 81 and serves w = 0.86, all over HTTP."""
    response = client.post("/v1/jobs", json=TEA_SPEC)
    job = response.json()

    assert response.status_code == 202
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["n_parameters"] == 1
    assert [t["status"] for t in job["transitions"]] == ["queued"]

    assert train(job["id"]) == "succeeded"

    history = client.get(f"/v1/jobs/{job['id']}/history").json()
    assert history["epoch"] == [1]
    assert history["train_loss"] == [81.0]
    weights = client.get(f"/v1/jobs/{job['id']}/weights", params={"format": "json"}).json()
    assert weights["parameters"]["dense_0.weight"]["data"] == [[0.86]]
    finished = client.get(f"/v1/jobs/{job['id']}").json()
    assert finished["status"] == "succeeded"
    assert finished["stop_reason"] == "completed"
    assert finished["progress"] == {"epoch": 1, "epochs": 1, "fraction": 1.0, "eta_seconds": 0.0}
    assert finished["metrics"]["train_loss"] == 81.0
    assert finished["best"] == {"epoch": 1, "monitor": "train_loss", "value": 81.0}
    assert finished["error"] is None
    assert [t["status"] for t in finished["transitions"]] == ["queued", "running", "succeeded"]


def test_idempotency_key_returns_the_same_job(client: TestClient) -> None:
    """The same key and body twice create one job, and the replay is marked in a header."""
    first = client.post("/v1/jobs", json=TEA_SPEC, headers={"Idempotency-Key": "k-1"})
    # Key order and defaults written out do not make a different body.
    same_spec = {**TEA_SPEC, "experiment": "default"}
    second = client.post("/v1/jobs", json=same_spec, headers={"Idempotency-Key": "k-1"})

    assert first.status_code == 202
    assert second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(client.get("/v1/jobs").json()["items"]) == 1


def test_idempotency_key_with_another_body_conflicts(client: TestClient) -> None:
    """Reusing a key with a different spec is a 409 that names the key and the job."""
    first = submit(client, TEA_SPEC, **{"Idempotency-Key": "k-2"})
    other = {**TEA_SPEC, "name": "another"}

    response = client.post("/v1/jobs", json=other, headers={"Idempotency-Key": "k-2"})

    problem = assert_problem(response, 409)
    assert "k-2" in problem["detail"]
    assert first["id"] in problem["detail"]


def test_idempotency_key_is_race_safe(settings: Settings) -> None:
    """Eight concurrent submissions with one key create exactly one job."""
    spec = parse_spec(TEA_SPEC)
    sent: list[str] = []

    def submit_once(_: int) -> tuple[str, bool]:
        job, created = jobs.create_job(settings, "local", spec, sent.append, "race-key")
        return job.id, created

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(submit_once, range(8)))

    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert sent == [results[0][0]]


def test_unexpected_error_hides_internals(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception is a 500 problem with the request id and no internals."""

    def fail(*args: Any) -> None:
        raise RuntimeError("secret connection string")

    monkeypatch.setattr(jobs, "get_job", fail)

    with client_for(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/v1/jobs/any")

    problem = assert_problem(response, 500)
    assert "secret" not in response.text
    assert problem["request_id"] == response.headers["x-request-id"]


def _with(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a copy of a spec with the dotted ``path`` set to ``value`` (or deleted)."""
    spec = copy.deepcopy(base or IRIS_SPEC)
    *parents, last = path.split(".")
    node: Any = spec
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return spec


_DELETE = object()

DIGITS_WIDE = {
    "dataset": "builtin:digits",
    "model": {
        "layers": [{"type": "dense", "units": 65_536}] * 3 + [{"type": "dense", "units": 10}]
    },
}

# (case, spec, a word the error location must contain, a text the message must contain)
BAD_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown layer type", _with("model.layers.0", {"type": "conv", "units": 8}), "layers", "conv"),
    ("units as text", _with("model.layers.0.units", "eight"), "units", "eight"),
    ("negative units", _with("model.layers.0.units", -3), "units", "-3"),
    ("absurd units", _with("model.layers.0.units", 10**9), "units", "1000000000"),
    ("fractional units", _with("model.layers.0.units", 2.5), "units", "2.5"),
    ("missing model", _with("model", _DELETE), "model", "model: missing; this field is required"),
    ("missing dataset", _with("dataset", _DELETE), "dataset", "dataset: missing"),
    ("lr NaN as text", _with("optimizer.lr", "NaN"), "lr", "NaN"),
    ("lr zero", _with("optimizer.lr", 0), "lr", "greater than 0"),
    ("unknown optimizer", _with("optimizer", "adamax"), "optimizer", "adamax"),
    ("unknown loss", _with("loss", "hinge"), "loss", "hinge"),
    ("unknown field", _with("training.epochz", 3), "epochz", "epochz"),
    ("zero epochs", _with("training.epochs", 0), "epochs", "0"),
    ("batch size as text", _with("training.batch_size", "big"), "batch_size", "big"),
    (
        "dropout rate above 1",
        _with("model.layers.0", {"type": "dropout", "rate": 1.5}),
        "rate",
        "1.5",
    ),
    (
        "dropout last",
        _with("model.layers.1", {"type": "dropout", "rate": 0.1}),
        "model",
        "last layer",
    ),
    ("tags not strings", _with("tags", {"team": 3}), "tags", "3"),
    ("tag key with colon", _with("tags", {"a:b": "c"}), "tags", "a:b"),
    (
        "val monitor without validation",
        _with("training", {"epochs": 3, "early_stopping": {"monitor": "val_loss"}}),
        "training",
        "validation_split",
    ),
    ("unknown dataset", _with("dataset", "builtin:nope"), "dataset", "builtin:nope"),
    ("bare built-in name", _with("dataset", "iris"), "dataset", "builtin:iris"),
    ("output units mismatch", _with("model.layers.1.units", 5), "units", "set units to 3"),
    (
        "regression loss on classes",
        _with("loss", "squared_error"),
        "units",
        "the loss squared_error makes this a regression on the class index of classification "
        "dataset 'builtin:iris', one target (to classify, use the loss cross_entropy); set "
        "units to 1",
    ),
    (
        "binary loss on three classes",
        _with("loss", "binary_cross_entropy"),
        "loss",
        "cross_entropy",
    ),
    (
        "accuracy monitor on regression",
        _with(
            "training",
            {"validation_split": 0.2, "early_stopping": {"monitor": "val_accuracy"}},
            {**TEA_SPEC, "dataset": "builtin:diabetes"},
        ),
        "monitor",
        "val_accuracy",
    ),
    ("too many parameters", DIGITS_WIDE, "model", "parameters"),
    (
        "split leaves no training rows",
        _with("training.validation_split", 0.9, {**TEA_SPEC, "dataset": "builtin:xor"}),
        "validation_split",
        "leaves none to train on",
    ),
    (
        "split leaves fewer rows than classes",
        {
            "dataset": "builtin:iris",
            "model": {"layers": [{"type": "dense", "units": 3}]},
            "training": {"validation_split": 0.99},
        },
        "validation_split",
        "leaves 2 training samples of dataset 'builtin:iris' for its 3 classes",
    ),
    (
        "split of the one-sample dataset",
        _with("training.validation_split", 0.5, TEA_SPEC),
        "validation_split",
        "0.5",
    ),
]


@pytest.mark.parametrize(
    ("spec", "field", "text"),
    [pytest.param(spec, field, text, id=case) for case, spec, field, text in BAD_SPECS],
)
def test_invalid_spec_is_rejected(
    client: TestClient, spec: dict[str, Any], field: str, text: str
) -> None:
    """Each bad spec is a 422 whose message names the field and shows the value or the fix."""
    response = client.post("/v1/jobs", json=spec)

    problem = assert_problem(response, 422)
    locations = [".".join(map(str, error["loc"])) for error in problem["errors"]]
    assert any(field in location for location in locations), locations
    assert text in problem["detail"]
    assert client.get("/v1/jobs").json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            '{"dataset": "builtin:tea", "optimizer": {"type": "sgd", "lr": 1e999}}', id="1e999"
        ),
        pytest.param(
            '{"dataset": "builtin:tea", "optimizer": {"type": "sgd", "lr": NaN}}', id="NaN"
        ),
    ],
)
def test_non_finite_number_is_rejected(client: TestClient, body: str) -> None:
    """1e999 (infinity once parsed) and a bare NaN token are 422s that name lr."""
    response = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})

    problem = assert_problem(response, 422)
    assert any(error["loc"][-1] == "lr" for error in problem["errors"])
    assert "lr" in problem["detail"]


def test_malformed_json_is_rejected(client: TestClient) -> None:
    """A body that is not JSON is a 422 whose message names the JSON error."""
    response = client.post(
        "/v1/jobs", content=b'{"dataset": ', headers={"content-type": "application/json"}
    )

    problem = assert_problem(response, 422)
    assert "not valid JSON" in problem["detail"]


def test_epochs_above_server_limit_are_rejected(configure: Any) -> None:
    """training.epochs above max_history_points is a 422 naming the limit."""
    settings = configure(max_history_points=10)
    spec = _with("training.epochs", 11)

    with client_for(create_app(settings)) as limited:
        response = limited.post("/v1/jobs", json=spec)

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "training", "epochs"]
    assert "10" in problem["detail"]


@pytest.mark.parametrize("dataset", ["builtin:iris", "builtin:digits", "builtin:diabetes"])
def test_parameter_count_matches_network(dataset: str) -> None:
    """The count from shapes equals the size of the network the engine builds."""
    spec = parse_spec(
        {
            "dataset": dataset,
            "model": {
                "layers": [
                    {"type": "dense", "units": 7, "activation": "tanh"},
                    {"type": "dropout", "rate": 0.2},
                    {"type": "dense", "units": 5, "bias": False},
                    {"type": "dense", "units": 3},
                ]
            },
        }
    )

    for n_features in (1, 4, 64):
        network = Network(spec.model, n_features, "float32")
        assert count_parameters(spec.model, n_features) == network.n_parameters


def test_request_id_is_echoed(client: TestClient) -> None:
    """A client's X-Request-ID comes back on success and in problem details."""
    ok = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    missing = client.get("/v1/jobs/nope", headers={"X-Request-ID": "abc-456"})

    assert ok.headers["x-request-id"] == "abc-123"
    assert missing.headers["x-request-id"] == "abc-456"
    assert missing.json()["request_id"] == "abc-456"
    assert json.loads(missing.text)["status"] == 404


def test_validation_messages_hide_pydantic_internals(client: TestClient) -> None:
    """Union member labels and tag-extraction wording never reach the client."""
    init_without_type = {"type": "dense", "units": 1, "init": {"value": 1.0}}
    no_type = {**TEA_SPEC, "model": {"layers": [init_without_type]}}

    missing_tag = client.post("/v1/jobs", json=no_type)
    bad_row = client.post(
        "/v1/jobs/unknown/predict",
        content='{"inputs": [[1.0, "x", 1e999]]}',
        headers={"Content-Type": "application/json"},
    )

    missing_detail = assert_problem(missing_tag, 422)["detail"]
    assert missing_detail.startswith("model.layers[0].init.type: missing;")
    detail = assert_problem(bad_row, 422)["detail"]
    assert "union[" not in detail
    assert "list[" not in detail
    assert "discriminator" not in assert_problem(missing_tag, 422)["detail"]


def test_validation_messages_say_got_once(client: TestClient) -> None:
    spec = {**TEA_SPEC, "model": {"layers": [{"type": "dense", "units": 3.5}]}}

    detail = assert_problem(client.post("/v1/jobs", json=spec), 422)["detail"]

    assert detail.count("got") == 1
    assert "3.5" in detail


def test_json_sent_as_text_gets_content_type_hint(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", content=json.dumps(TEA_SPEC), headers={"Content-Type": "text/plain"}
    )

    assert "Content-Type: application/json" in assert_problem(response, 422)["detail"]
