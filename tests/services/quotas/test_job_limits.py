"""Per-job limits at POST /v1/jobs: parameters, epochs times samples, and estimated memory
are each a 422 whose detail names the value and the limit, and nothing is stored."""

from __future__ import annotations

import copy
from typing import Any

from core.memory import estimate_memory
from core.spec import parse_spec
from tests.services.api.conftest import assert_problem
from tests.services.auth import client_for
from tests.services.quotas.conftest import IRIS_SPEC, MakeApp, count_jobs


def with_values(spec: dict[str, Any], **paths: Any) -> dict[str, Any]:
    """Copy ``spec`` with values set at dotted paths (``training__epochs`` for training.epochs)."""
    result = copy.deepcopy(spec)
    for dotted, value in paths.items():
        *parents, last = dotted.split("__")
        node = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return result


def test_parameter_limit_names_largest_layer(make_app: MakeApp) -> None:
    """A model above max_parameters is a 422 at its largest layer's units, with both counts."""
    app = make_app(max_parameters=500)
    # iris has 4 features: 4*64 + 64 + 64*3 + 3 = 515 parameters, 320 in layer 0.
    spec = copy.deepcopy(IRIS_SPEC)
    spec["model"]["layers"][0]["units"] = 64
    with client_for(app, tenant="tenant-a") as client:
        response = client.post("/v1/jobs", json=spec)

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "model", "layers", 0, "units"]
    assert "515 parameters" in problem["detail"]
    assert "limit of 500" in problem["detail"]
    assert "model.layers[0], has 320" in problem["detail"]
    assert count_jobs(app.state.settings, "tenant-a") == 0


def test_epoch_samples_limit_names_epochs(make_app: MakeApp) -> None:
    """Epochs times training samples above max_epoch_samples is a 422 at training.epochs."""
    app = make_app(max_epoch_samples=1000)
    # iris has 150 samples; a validation split of 0.2 leaves 120 for training.
    spec = with_values(IRIS_SPEC, training__epochs=10)
    with client_for(app, tenant="tenant-a") as client:
        rejected = client.post("/v1/jobs", json=spec)
        accepted = client.post("/v1/jobs", json=with_values(IRIS_SPEC, training__epochs=8))

    problem = assert_problem(rejected, 422)
    assert problem["errors"][0]["loc"] == ["body", "training", "epochs"]
    assert "train on 1,200 samples" in problem["detail"]
    assert "limit of 1,000" in problem["detail"]
    assert "at most 8 epochs" in problem["detail"]
    assert accepted.status_code == 202, accepted.text
    assert count_jobs(app.state.settings, "tenant-a") == 1


def test_memory_limit_gives_estimate(make_app: MakeApp) -> None:
    """A job estimated above worker_memory_bytes is a 422 with the estimate and the limit."""
    app = make_app(worker_memory_bytes=2**20)
    spec = copy.deepcopy(IRIS_SPEC)
    spec["model"]["layers"][0]["units"] = 2048
    spec["model"]["layers"].insert(1, {"type": "dense", "units": 64, "activation": "relu"})
    estimate = estimate_memory(parse_spec(spec), 150, 4, 3, "classification")
    assert estimate.peak_bytes > 2**20
    with client_for(app, tenant="tenant-a") as client:
        response = client.post("/v1/jobs", json=spec)

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "model"]
    assert problem["detail"].startswith(f"this job needs {estimate.describe('float32')}")
    assert "the limit is 1.0 MiB (STEEP_WORKER_MEMORY_BYTES)" in problem["detail"]
    assert "parameters and optimizer state" in problem["detail"]
    assert "use fewer or smaller layers" in problem["detail"]
    assert count_jobs(app.state.settings, "tenant-a") == 0


def test_limits_allow_job_within_them(make_app: MakeApp) -> None:
    """The default limits accept an ordinary job."""
    app = make_app()
    with client_for(app, tenant="tenant-a") as client:
        response = client.post("/v1/jobs", json=IRIS_SPEC)

    assert response.status_code == 202, response.text
