"""``GET /v1/jobs/{id}/trace``: the first training step of a job, decomposed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.services.api.conftest import IRIS_SPEC, TEA_SPEC, assert_problem, submit


def test_trace_one_weight_job(client: TestClient) -> None:
    """The one-weight job's trace shows loss 81, dL/dw -36 and w going from 0.5 to 0.86."""
    job = submit(client, TEA_SPEC)

    response = client.get(f"/v1/jobs/{job['id']}/trace")

    assert response.status_code == 200, response.text
    trace = response.json()
    assert trace["output"]["values"] == [[1.0]]
    assert trace["loss"]["value"] == 81.0
    assert trace["loss"]["grad_output"]["values"] == [[-18.0]]
    (layer,) = trace["backward"]
    assert layer["local_gradient"]["weight"]["values"] == [[2.0]]
    assert layer["grad_params"]["weight"]["values"] == [[-36.0]]
    (weight,) = trace["update"]["parameters"]
    assert weight["before"]["values"] == [[0.5]]
    assert weight["after"]["values"] == [[0.86]]
    assert trace["lr"] == 0.01


def test_trace_summarizes_above_max_values(client: TestClient) -> None:
    """With max_values=4, iris's 4x8 first weight comes as a summary and its lr is the spec's."""
    job = submit(client, IRIS_SPEC)

    response = client.get(f"/v1/jobs/{job['id']}/trace", params={"max_values": 4})

    assert response.status_code == 200, response.text
    trace = response.json()
    weight = trace["update"]["parameters"][0]
    assert weight["name"] == "dense_0.weight"
    assert weight["shape"] == [4, 8]
    assert set(weight["before"]["summary"]) == {"mean", "std", "min", "max", "l2_norm"}
    assert trace["input"]["shape"] == [16, 4]
    assert trace["lr"] == 0.02


def test_trace_rejects_max_values_zero(client: TestClient) -> None:
    """max_values below 1 is a 422 problem that names the parameter."""
    job = submit(client, TEA_SPEC)

    response = client.get(f"/v1/jobs/{job['id']}/trace", params={"max_values": 0})

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["query", "max_values"]
