"""Uploaded datasets end to end: upload, describe, train, predict from raw rows, delete."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from core.data import SPLIT_STREAM, seed_stream
from core.paramfile import load_model
from core.split import split_indices
from services.settings import Settings
from services.store.db import session_scope
from services.store.models import Weights
from tests.services.api.conftest import assert_problem, submit
from tests.services.datasets.conftest import Train
from tests.services.datasets.helpers import (
    CHURN_COLUMNS,
    churn_csv,
    churn_rows,
    churn_spec,
    count_rows,
    npz_bytes,
    upload,
)


def _upload_churn(client: TestClient, content: bytes | None = None) -> dict[str, Any]:
    response = upload(client, "churn.csv", content or churn_csv(), name="churn")
    assert response.status_code == 201, response.text
    dataset: dict[str, Any] = response.json()
    return dataset


def _trained_churn_job(client: TestClient, train: Train) -> tuple[dict[str, Any], str]:
    dataset = _upload_churn(client)
    job = submit(client, churn_spec(dataset["id"]))
    status = train(job["id"])
    assert status == "succeeded", client.get(f"/v1/jobs/{job['id']}").json()["error"]
    return dataset, job["id"]


def _predict(client: TestClient, job_id: str, inputs: list[Any]) -> Any:
    return client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": inputs})


# Uploading and describing -------------------------------------------------------------


def test_churn_upload_describes_columns(client: TestClient) -> None:
    """A CSV with text features and a text target is classification with one-hot columns."""
    dataset = _upload_churn(client)

    assert dataset["source"] == "upload"
    assert dataset["task"] == "classification"
    assert dataset["classes"] == ["no", "yes"]
    assert dataset["target_names"] == ["churn"]
    assert [column["name"] for column in dataset["columns"]] == CHURN_COLUMNS
    city = dataset["columns"][1]
    assert city == {
        "name": "city",
        "type": "text",
        "categories": ["Bergen", "Oslo", "Stavanger", "Trondheim"],
    }
    assert dataset["n_features"] == 3 + 4 + 3
    assert "city=Oslo" in dataset["feature_names"]
    assert (dataset["n_samples"], dataset["n_outputs"]) == (200, 2)
    assert dataset["missing_values"] is None
    assert client.get(f"/v1/datasets/{dataset['id']}").json() == dataset


def test_same_bytes_return_existing_dataset(client: TestClient, settings: Settings) -> None:
    """Uploading the same bytes again returns the stored dataset with 200, not a copy."""
    first = _upload_churn(client)

    second = upload(client, "again.csv", churn_csv(), name="another name")

    assert second.status_code == 200
    assert second.json()["id"] == first["id"]
    assert second.json()["name"] == "churn"
    assert count_rows(settings) == (1, 1)


def test_same_bytes_other_target_conflict(client: TestClient) -> None:
    """The same bytes with another target are a 409 naming the stored dataset."""
    first = _upload_churn(client)

    response = upload(client, "churn.csv", churn_csv(), target="tenure_months")

    problem = assert_problem(response, 409)
    assert first["id"] in problem["detail"]
    assert "'tenure_months'" in problem["detail"]


def test_bom_quotes_and_semicolons_accepted(client: TestClient) -> None:
    """A BOM is stripped, quoted delimiters stay in their field, and ';' is detected."""
    content = '\ufeffsize;place;label\n1.5;"Oslo; Norway";a\n2.5;Bergen;b\n3.5;Bergen;a\n'

    response = upload(client, "semi.csv", content.encode("utf-8"))

    assert response.status_code == 201, response.text
    dataset = response.json()
    assert [column["name"] for column in dataset["columns"]] == ["size", "place"]
    assert dataset["columns"][1]["categories"] == ["Bergen", "Oslo; Norway"]
    assert dataset["classes"] == ["a", "b"]


def test_quoted_commas_accepted(client: TestClient) -> None:
    """A quoted field with commas is one value of a comma-separated file."""
    content = 'x,city,y\n1,"Oslo, Norway",0\n2,"Bergen, Norway",1\n3,Oslo,0\n4,Oslo,1\n'

    response = upload(client, "quoted.csv", content.encode())

    assert response.status_code == 201, response.text
    assert response.json()["columns"][1]["categories"] == ["Bergen, Norway", "Oslo", "Oslo, Norway"]


def test_npz_and_json_uploads(client: TestClient) -> None:
    """NPZ arrays and JSON rows (with a text column) are stored like a CSV."""
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    from_npz = upload(client, "xor.npz", npz_bytes(x=x, y=np.array([0, 1, 1, 0])))
    content = {"x": [[1.5, "red"], [2.5, "blue"], [None, "red"]], "y": [0.5, 1.5, 2.0]}
    from_json = upload(client, "paint.json", json.dumps(content).encode())

    assert from_npz.status_code == 201, from_npz.text
    assert (from_npz.json()["task"], from_npz.json()["classes"]) == ("classification", [0, 1])
    assert from_json.status_code == 201, from_json.text
    assert from_json.json()["task"] == "regression"
    assert from_json.json()["feature_names"] == ["x0", "x1=blue", "x1=red"]
    assert from_json.json()["missing_values"] == {
        "count": 1,
        "row": 2,
        "line": None,
        "column": "x0",
    }


def test_task_inference_rule(client: TestClient) -> None:
    """Few whole numbers are classes; many different values, or fractions, are regression."""
    few = "a,y\n" + "".join(f"{i},{i % 3}\n" for i in range(30))
    many = "a,y\n" + "".join(f"{i},{i}\n" for i in range(30))
    fractions = "a,y\n" + "".join(f"{i},{i % 3 + 0.5}\n" for i in range(30))

    tasks = [
        upload(client, f"{name}.csv", content.encode()).json()
        for name, content in (("few", few), ("many", many), ("fractions", fractions))
    ]

    assert [dataset["task"] for dataset in tasks] == ["classification", "regression", "regression"]
    assert tasks[0]["classes"] == [0, 1, 2]


# Training and predicting ---------------------------------------------------------------


def test_churn_job_predicts_labels_from_raw_rows(client: TestClient, train: Train) -> None:
    """The trained churn model predicts yes/no from raw lists and objects alike."""
    _, job_id = _trained_churn_job(client, train)
    rows = churn_rows()[:50]
    as_lists = [row[:-1] for row in rows]
    as_objects = [dict(zip(CHURN_COLUMNS, row[:-1], strict=True)) for row in rows]

    from_lists = _predict(client, job_id, as_lists)
    from_objects = _predict(client, job_id, as_objects)

    assert from_lists.status_code == 200, from_lists.text
    predictions = from_lists.json()["predictions"]
    assert set(predictions) <= {"yes", "no"}
    assert np.mean([p == row[-1] for p, row in zip(predictions, rows, strict=True)]) >= 0.9
    assert from_objects.json() == from_lists.json()
    assert np.array(from_lists.json()["outputs"]).shape == (50, 2)


def test_downloaded_file_predicts_raw_rows(client: TestClient, train: Train) -> None:
    """The NPZ and JSON parameter files encode raw rows and predict the API's labels."""
    _, job_id = _trained_churn_job(client, train)
    rows = [row[:-1] for row in churn_rows()[:40]]
    expected = _predict(client, job_id, rows).json()["predictions"]

    npz = client.get(f"/v1/jobs/{job_id}/weights", params={"format": "npz"})
    from_json = load_model(client.get(f"/v1/jobs/{job_id}/weights?format=json").json())
    from_npz = load_model(npz.content)

    assert from_npz.encoding is not None
    assert from_npz.predict(from_npz.encode(rows)).tolist() == expected
    assert from_json.predict(from_json.encode(rows)).tolist() == expected
    with np.load(io.BytesIO(npz.content), allow_pickle=False) as archive:
        meta = json.loads(str(archive["meta"]))
    assert meta["encoding"]["columns"][2]["categories"] == ["basic", "pro", "team"]


def test_stored_weights_carry_encoding(
    client: TestClient, train: Train, settings: Settings
) -> None:
    """The worker stores the text columns' categories in the job's parameter file itself,
    so raw rows still predict after the dataset is deleted."""
    dataset, job_id = _trained_churn_job(client, train)
    rows = [row[:-1] for row in churn_rows()[:20]]
    expected = _predict(client, job_id, rows).json()["predictions"]

    deleted = client.delete(f"/v1/datasets/{dataset['id']}")
    with session_scope(settings.resolved_database_url, write=False) as session:
        stored = session.get(Weights, job_id)
        assert stored is not None
        model = load_model(stored.data)
    after_delete = _predict(client, job_id, rows)

    assert deleted.status_code == 204, deleted.text
    assert model.encoding is not None
    assert model.predict(model.encode(rows)).tolist() == expected
    assert after_delete.status_code == 200, after_delete.text
    assert after_delete.json()["predictions"] == expected


def test_predict_unknown_category_lists_known(client: TestClient, train: Train) -> None:
    """An unseen category is a 422 naming the column and the value, listing the known ones."""
    _, job_id = _trained_churn_job(client, train)
    row = {"customer_age": 40, "city": "Paris", "plan": "pro", "monthly_spend": 50.0}

    response = _predict(client, job_id, [{**row, "tenure_months": 12}])

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "inputs", 0, "city"]
    assert "'Paris'" in problem["detail"]
    assert "column 'city'" in problem["detail"]
    assert "'Bergen', 'Oslo', 'Stavanger', 'Trondheim'" in problem["detail"]


def test_predict_rejects_missing_and_extra_keys(client: TestClient, train: Train) -> None:
    """Objects need every input column and nothing else; each problem names the keys."""
    _, job_id = _trained_churn_job(client, train)
    full = dict(zip(CHURN_COLUMNS, churn_rows()[0][:-1], strict=True))
    without = {key: value for key, value in full.items() if key != "plan"}

    missing = _predict(client, job_id, [full, without])
    extra = _predict(client, job_id, [{**full, "zip": "0150"}])
    short = _predict(client, job_id, [list(full.values())[:3]])

    assert "inputs[1] has no value for the column 'plan'" in assert_problem(missing, 422)["detail"]
    assert "unknown column 'zip'" in assert_problem(extra, 422)["detail"]
    problem = assert_problem(short, 422)
    assert "inputs[0] has 3 values" in problem["detail"]
    assert "'customer_age', 'city', 'plan', 'monthly_spend', 'tenure_months'" in problem["detail"]


def test_missing_values_rejected_at_submit(
    client: TestClient, train: Train, settings: Settings
) -> None:
    """Missing feature values are stored, named at submit, and trained with impute."""
    rows = churn_rows()
    rows[4][0] = ""
    rows[9][1] = ""
    dataset = _upload_churn(client, churn_csv(rows))

    rejected = client.post("/v1/jobs", json=churn_spec(dataset["id"]))
    spec = churn_spec(dataset["id"])
    spec["preprocessing"]["impute"] = "median"
    job = submit(client, spec)

    assert dataset["missing_values"] == {
        "count": 2,
        "row": 4,
        "line": 6,
        "column": "customer_age",
    }
    problem = assert_problem(rejected, 422)
    assert problem["errors"][0]["loc"] == ["body", "preprocessing", "impute"]
    assert "line 6 (row 4), column 'customer_age'" in problem["detail"]
    assert "set preprocessing.impute" in problem["detail"]
    assert train(job["id"]) == "succeeded"
    with_gap = [None if value == "" else value for value in rows[9][:-1]]
    assert set(_predict(client, job["id"], [with_gap]).json()["predictions"]) <= {"yes", "no"}


def test_integer_labels_train_as_regression(client: TestClient, train: Train) -> None:
    """A spec's task overrides the inferred one: integer classes train as regression values."""
    content = "a,y\n" + "".join(f"{i / 10},{i % 3}\n" for i in range(60))
    dataset = upload(client, "ints.csv", content.encode()).json()
    spec = {
        "dataset": dataset["id"],
        "task": "regression",
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "training": {"epochs": 2, "dtype": "float64"},
    }

    job = submit(client, spec)

    assert dataset["task"] == "classification"
    assert train(job["id"]) == "succeeded"
    predictions = _predict(client, job["id"], [[0.5]]).json()["predictions"]
    assert isinstance(predictions[0], float)


def test_text_labels_cannot_train_regression(client: TestClient) -> None:
    """A regression spec on text labels is rejected at submit, naming the labels."""
    dataset = _upload_churn(client)
    spec = {**churn_spec(dataset["id"]), "task": "regression"}
    spec["model"]["layers"][-1]["units"] = 1

    response = client.post("/v1/jobs", json=spec)

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "task"]
    assert "'no', 'yes'" in problem["detail"]


def test_standardization_fitted_on_training_split(client: TestClient, train: Train) -> None:
    """The recorded mean is the training rows' mean; extreme validation rows do not move it."""
    n_samples, seed, split = 40, 3, 0.25
    train_index, val_index = split_indices(n_samples, split, seed_stream(seed, SPLIT_STREAM))
    x = np.linspace(-1.0, 1.0, n_samples)
    x[val_index] = 1e6
    content = "a,y\n" + "".join(f"{value},{value * 0.001 + 0.25}\n" for value in x)
    dataset = upload(client, "spread.csv", content.encode()).json()
    spec = {
        "dataset": dataset["id"],
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "training": {"epochs": 1, "seed": seed, "validation_split": split, "shuffle": False},
        "preprocessing": {"standardize": True},
    }
    job = submit(client, spec)
    assert train(job["id"]) == "succeeded"

    model = load_model(client.get(f"/v1/jobs/{job['id']}/weights").content)

    assert dataset["task"] == "regression"
    assert model.preprocessor.mean is not None
    np.testing.assert_allclose(model.preprocessor.mean, [x[train_index].mean()])
    assert abs(model.preprocessor.mean[0]) < 1.0


# Listing and deleting ------------------------------------------------------------------


def test_list_pages_through_builtins_and_uploads(client: TestClient) -> None:
    """Uploads follow the built-ins, oldest first, across pages of the given limit."""
    first = _upload_churn(client)
    second = upload(client, "small.csv", b"a,y\n1,0\n2,1\n3,0\n4,1\n").json()

    ids: list[str] = []
    cursor = None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/datasets", params=params).json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert ids[-2:] == [first["id"], second["id"]]
    assert ids[0] == "builtin:tea"


def test_delete_dataset_in_use_conflict(client: TestClient, settings: Settings) -> None:
    """A dataset that a queued job uses is a 409; once the job is cancelled it is deleted."""
    dataset = _upload_churn(client)
    job = submit(client, churn_spec(dataset["id"]))

    in_use = client.delete(f"/v1/datasets/{dataset['id']}")
    client.post(f"/v1/jobs/{job['id']}/cancel")
    deleted = client.delete(f"/v1/datasets/{dataset['id']}")

    assert job["id"] in assert_problem(in_use, 409)["detail"]
    assert deleted.status_code == 204
    assert_problem(client.get(f"/v1/datasets/{dataset['id']}"), 404)
    assert count_rows(settings) == (0, 0)


def test_delete_builtin_or_unknown_dataset(client: TestClient) -> None:
    """Built-in datasets cannot be deleted (409); an unknown id is a 404."""
    builtin = client.delete("/v1/datasets/builtin:iris")
    unknown = client.delete("/v1/datasets/nope")

    assert "cannot be deleted" in assert_problem(builtin, 409)["detail"]
    assert_problem(unknown, 404)
