"""GET /v1/datasets, the health checks, and the OpenAPI document."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

import core
from services.api.app import create_app
from services.settings import Settings
from services.store.db import session_scope
from services.store.models import DatasetRow
from tests.services.api.conftest import assert_problem

DATASET_FIELDS = {
    "id",
    "name",
    "source",
    "task",
    "n_samples",
    "n_features",
    "n_outputs",
    "feature_names",
    "classes",
    "sha256",
    "size_bytes",
    "created_at",
}


def _add_upload(settings: Settings, dataset_id: str, created_at: datetime) -> None:
    """Store an uploaded dataset's description row, as an upload would."""
    with session_scope(settings.resolved_database_url) as session:
        session.add(
            DatasetRow(
                id=dataset_id,
                tenant="local",
                name=f"upload {dataset_id}",
                task="regression",
                n_samples=3,
                n_features=2,
                n_outputs=1,
                feature_names=["a", "b"],
                target_names=["y"],
                classes=None,
                encoding={},
                file_format="csv",
                sha256=hashlib.sha256(dataset_id.encode()).hexdigest(),
                size_bytes=42,
                created_at=created_at,
            )
        )


def test_list_builtin_datasets(client: TestClient) -> None:
    """Every built-in dataset is listed with the documented fields."""
    response = client.get("/v1/datasets")

    items = response.json()["items"]
    assert response.status_code == 200
    assert [item["id"] for item in items] == [f"builtin:{name}" for name in core.BUILTIN_NAMES]
    for item in items:
        assert set(item) >= DATASET_FIELDS
        assert item["source"] == "builtin"
    digits = next(item for item in items if item["name"] == "digits")
    assert (digits["n_samples"], digits["n_features"], digits["n_outputs"]) == (1797, 64, 10)
    assert digits["classes"][:3] == ["0", "1", "2"]
    tea = client.get("/v1/datasets/builtin:tea").json()
    assert tea["task"] == "regression"
    assert tea["classes"] is None
    assert tea["size_bytes"] == 16
    expected = hashlib.sha256(
        b"".join(a.tobytes() for a in (core.load_builtin("tea").x, core.load_builtin("tea").y))
    )
    assert tea["sha256"] == expected.hexdigest()


def test_list_datasets_pages_through_uploads(client: TestClient, settings: Settings) -> None:
    """Pages of 4 run through the built-ins and then the uploads, oldest first, once each."""
    for day, dataset_id in enumerate(["ds-c", "ds-a", "ds-b"], start=1):
        _add_upload(settings, dataset_id, datetime(2026, 1, day, tzinfo=UTC))
    seen: list[str] = []
    cursor = None

    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/datasets", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    builtins = [f"builtin:{name}" for name in core.BUILTIN_NAMES]
    assert seen == [*builtins, "ds-c", "ds-a", "ds-b"]
    upload = client.get("/v1/datasets/ds-a").json()
    assert upload["source"] == "upload"
    assert upload["feature_names"] == ["a", "b"]


def test_job_on_uploaded_dataset_checks_its_outputs(client: TestClient, settings: Settings) -> None:
    """A spec on an upload is checked against the upload's n_outputs without loading it."""
    _add_upload(settings, "ds-reg", datetime(2026, 1, 1, tzinfo=UTC))
    spec = {"dataset": "ds-reg", "model": {"layers": [{"type": "dense", "units": 2}]}}

    response = client.post("/v1/jobs", json=spec)

    assert "set units to 1" in assert_problem(response, 422)["detail"]


def test_bad_dataset_cursor_is_rejected(client: TestClient) -> None:
    """A garbled dataset cursor is a 422 naming the cursor."""
    response = client.get("/v1/datasets", params={"cursor": "garbage"})

    assert assert_problem(response, 422)["errors"][0]["loc"] == ["query", "cursor"]


def test_health_and_readiness(client: TestClient) -> None:
    """healthz is always 200; readyz is 200 with the database and broker reachable."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


PAGES = ("/", "/dashboard/app.js", "/docs", "/docs/start.js", "/healthz", "/readyz")


@pytest.mark.parametrize("path", PAGES)
def test_head_answers_like_get_without_body(client: TestClient, path: str) -> None:
    """HEAD on a page or a health check has GET's status and headers, and no body."""
    get = client.get(path)

    head = client.head(path)

    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.content == b""


def test_openapi_lists_no_head_or_page_routes(openapi: dict[str, Any]) -> None:
    """The document lists the health checks once, as GET, and no page or HEAD route."""
    methods = {path: set(operations) for path, operations in openapi["paths"].items()}

    assert methods["/healthz"] == methods["/readyz"] == {"get"}
    assert not [path for path in methods if path == "/" or path.startswith(("/docs", "/dash"))]
    assert not [path for path, names in methods.items() if "head" in names]


@pytest.mark.parametrize(
    ("setting", "url", "message"),
    [
        ("broker_url", "redis://127.0.0.1:1/0", "broker unreachable"),
        ("database_url", "postgresql+psycopg://postgres@127.0.0.1:1/none", "database unreachable"),
    ],
)
def test_readiness_fails_without_backend(
    settings: Settings, setting: str, url: str, message: str
) -> None:
    """readyz is a 503 problem naming the backend that cannot be reached."""
    unreachable = settings.model_copy(update={setting: url})

    with TestClient(create_app(unreachable)) as client:
        response = client.get("/readyz")

    assert message in assert_problem(response, 503)["detail"]


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    """The OpenAPI document of an app that is never started."""
    document: dict[str, Any] = TestClient(create_app(Settings())).get("/openapi.json").json()
    return document


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/v1/jobs", "post", {"202", "409", "422"}),
        ("/v1/jobs", "get", {"200", "422"}),
        ("/v1/jobs/{job_id}", "get", {"200", "404"}),
        ("/v1/jobs/{job_id}", "delete", {"204", "404", "409"}),
        ("/v1/jobs/{job_id}/history", "get", {"200", "304", "404", "422"}),
        ("/v1/jobs/{job_id}/events", "get", {"200", "404"}),
        ("/v1/jobs/{job_id}/cancel", "post", {"202", "404", "409"}),
        ("/v1/jobs/{job_id}/weights", "get", {"200", "404", "409"}),
        ("/v1/jobs/{job_id}/predict", "post", {"200", "404", "409", "422"}),
        ("/v1/datasets", "get", {"200"}),
        ("/v1/datasets/{dataset_id}", "get", {"200", "404"}),
        ("/healthz", "get", {"200"}),
        ("/readyz", "get", {"200", "503"}),
    ],
)
def test_openapi_lists_the_contract(
    openapi: dict[str, Any], path: str, method: str, statuses: set[str]
) -> None:
    """/openapi.json documents each endpoint with the statuses the contract fixes."""
    operation = openapi["paths"][path][method]

    assert statuses <= set(operation["responses"])


def test_openapi_numeric_queries_have_minimum(openapi: dict[str, Any]) -> None:
    """Every integer or number query parameter declares a minimum, so a negative is a 422."""
    unbounded = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                members = [schema, *schema.get("anyOf", [])]
                types = {member.get("type") for member in members}
                numeric = bool(types & {"integer", "number"})
                bounded = "minimum" in schema or "exclusiveMinimum" in schema
                if parameter["in"] == "query" and numeric and not bounded:
                    unbounded.append(f"{method.upper()} {path} {parameter['name']}")

    assert unbounded == []


def test_openapi_job_fields_match_the_contract(openapi: dict[str, Any]) -> None:
    """The Job schema has every field the contract names."""
    fields = set(openapi["components"]["schemas"]["JobPublic"]["properties"])

    assert {
        "id",
        "name",
        "experiment",
        "tags",
        "dataset",
        "spec",
        "status",
        "stop_reason",
        "progress",
        "metrics",
        "best",
        "n_parameters",
        "attempt",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    } <= fields


def test_docs_load_nothing_from_other_hosts(client: TestClient) -> None:
    """/docs works offline: every script, stylesheet and icon it names is served here."""
    import re

    page = client.get("/docs")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)

    assert page.status_code == 200
    assert "http://" not in page.text
    assert "https://" not in page.text
    assert len(assets) == 4  # stylesheet, icon, Swagger UI and the script that starts it
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
