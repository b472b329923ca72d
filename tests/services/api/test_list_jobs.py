"""GET /v1/jobs: filters, sorting by time and by metric, and cursor paging."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.services.api.conftest import TEA_SPEC, Train, assert_problem, submit


def _tea(weight: float, experiment: str, tags: dict[str, str]) -> dict[str, Any]:
    """The one-weight spec starting at ``weight``: its epoch loss is (10 - 2 * weight) ** 2."""
    spec = copy.deepcopy(TEA_SPEC)
    spec["model"]["layers"][0]["init"]["value"] = weight
    return {**spec, "experiment": experiment, "tags": tags}


@pytest.fixture
def jobs(client: TestClient, train: Train) -> dict[str, dict[str, Any]]:
    """Seven jobs: five trained (losses 81, 64, 36, 16, 4) and two queued, by name."""
    plan = [
        ("w0.5", 0.5, "a", {"team": "x"}),
        ("w1", 1.0, "a", {"team": "x", "size": "big"}),
        ("w2", 2.0, "a", {"team": "y"}),
        ("w3", 3.0, "b", {}),
        ("w4", 4.0, "b", {"team": "x"}),
        ("queued-1", 0.5, "b", {"team": "x"}),
        ("queued-2", 0.5, "a", {}),
    ]
    created = {}
    for name, weight, experiment, tags in plan:
        job = submit(client, {**_tea(weight, experiment, tags), "name": name})
        if not name.startswith("queued"):
            train(job["id"])
        created[name] = job
    return created


def _names(client: TestClient, jobs: dict[str, dict[str, Any]], **params: Any) -> list[str]:
    by_id = {job["id"]: name for name, job in jobs.items()}
    response = client.get("/v1/jobs", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return [by_id[item["id"]] for item in response.json()["items"]]


def test_list_filters(client: TestClient, jobs: dict[str, dict[str, Any]]) -> None:
    """status, experiment, dataset and repeated tag filters each narrow the list."""
    assert sorted(_names(client, jobs, status="queued")) == ["queued-1", "queued-2"]
    assert len(_names(client, jobs, status=["queued", "succeeded"])) == 7
    assert sorted(_names(client, jobs, experiment="b")) == ["queued-1", "w3", "w4"]
    assert sorted(_names(client, jobs, tag="team:x")) == ["queued-1", "w0.5", "w1", "w4"]
    assert _names(client, jobs, tag=["team:x", "size:big"]) == ["w1"]
    assert _names(client, jobs, tag="team:z") == []
    assert len(_names(client, jobs, dataset="builtin:tea")) == 7
    assert _names(client, jobs, dataset="builtin:iris") == []
    assert _names(client, jobs, experiment="a", status="succeeded", tag="team:y") == ["w2"]


def test_list_sorts_by_metric(client: TestClient, jobs: dict[str, dict[str, Any]]) -> None:
    """Sorting by train_loss orders the trained jobs; jobs without it come last either way."""
    ascending = _names(client, jobs, sort="train_loss")
    descending = _names(client, jobs, sort="-train_loss")

    assert ascending[:5] == ["w4", "w3", "w2", "w1", "w0.5"]
    assert descending[:5] == ["w0.5", "w1", "w2", "w3", "w4"]
    assert sorted(ascending[5:]) == sorted(descending[5:]) == ["queued-1", "queued-2"]
    assert _names(client, jobs, sort="-grad_norm.dense_0")[0] == "w0.5"


def test_list_sorts_by_time(client: TestClient, jobs: dict[str, dict[str, Any]]) -> None:
    """created_at follows submission order (newest first by default); finished_at skips
    unfinished jobs to the end."""
    submitted = list(jobs)

    assert _names(client, jobs) == submitted[::-1]
    assert _names(client, jobs, sort="created_at") == submitted
    assert _names(client, jobs, sort="finished_at")[:5] == submitted[:5]
    assert _names(client, jobs, sort="-finished_at")[:5] == submitted[:5][::-1]


@pytest.mark.parametrize(
    "sort",
    ["-created_at", "created_at", "finished_at", "-finished_at", "train_loss", "-train_loss"],
)
def test_list_pages_have_no_repeats_or_gaps(
    client: TestClient, jobs: dict[str, dict[str, Any]], sort: str
) -> None:
    """Following next_cursor with limit=2 yields the full list once, in the same order."""
    expected = _names(client, jobs, sort=sort)
    by_id = {job["id"]: name for name, job in jobs.items()}
    pages: list[list[str]] = []
    cursor = None

    while True:
        params: dict[str, Any] = {"sort": sort, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/jobs", params=params).json()
        pages.append([by_id[item["id"]] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [name for page in pages for name in page] == expected
    assert [len(page) for page in pages] == [2, 2, 2, 1]


def test_list_rejects_bad_cursor_and_sort(
    client: TestClient, jobs: dict[str, dict[str, Any]]
) -> None:
    """A garbled cursor, a cursor from another sort, a bad sort or tag are 422s."""
    cursor = client.get("/v1/jobs", params={"limit": 2}).json()["next_cursor"]

    garbled = client.get("/v1/jobs", params={"cursor": "not-a-cursor"})
    other_sort = client.get("/v1/jobs", params={"cursor": cursor, "sort": "train_loss"})
    bad_sort = client.get("/v1/jobs", params={"sort": "train loss"})
    bad_tag = client.get("/v1/jobs", params={"tag": "no-colon"})
    too_many = client.get("/v1/jobs", params={"limit": 501})

    assert assert_problem(garbled, 422)["errors"][0]["loc"] == ["query", "cursor"]
    assert "sort=-created_at" in assert_problem(other_sort, 422)["detail"]
    assert assert_problem(bad_sort, 422)["errors"][0]["loc"] == ["query", "sort"]
    assert "key:value" in assert_problem(bad_tag, 422)["detail"]
    assert assert_problem(too_many, 422)["errors"][0]["loc"] == ["query", "limit"]


def test_list_items_carry_summaries(client: TestClient, jobs: dict[str, dict[str, Any]]) -> None:
    """List items carry progress, metrics and best, but no transitions."""
    items = client.get("/v1/jobs", params={"sort": "train_loss", "limit": 1}).json()["items"]

    assert items[0]["metrics"]["train_loss"] == 4.0
    assert items[0]["progress"]["fraction"] == 1.0
    assert items[0]["best"]["value"] == 4.0
    assert "transitions" not in items[0]


@pytest.mark.parametrize("sort", ["bogus", "-val_acc", "grad_norm"])
def test_list_unknown_sort_key_is_422(client: TestClient, sort: str) -> None:
    """A sort key that no job records is a 422 listing the accepted keys, not a silent order."""
    response = client.get("/v1/jobs", params={"sort": sort})

    detail = assert_problem(response, 422)["detail"]
    assert "val_loss" in detail
    assert repr(sort) in detail
