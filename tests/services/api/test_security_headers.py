"""Security headers on pages, API responses, errors and /docs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services import jobs
from services.api.app import create_app
from services.api.security_headers import API_POLICY, DASHBOARD_POLICY, DOCS_POLICY
from services.settings import Settings
from tests.services.api.conftest import TEA_SPEC, Train, assert_problem, submit
from tests.services.auth import client_for
from tests.services.conftest import Configure

# The headers do not depend on the database or the broker, so one mode is enough.
pytestmark = pytest.mark.parametrize("mode", ["embedded"], indirect=True)


def assert_common_headers(response: Any, policy: str) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == policy
    assert "frame-ancestors 'none'" in policy
    assert "strict-transport-security" not in response.headers


def test_dashboard_page_headers(client: TestClient) -> None:
    """The page and its files may load only this origin's scripts, styles and images."""
    page = client.get("/")
    script = client.get("/dashboard/app.js")

    assert page.status_code == 200
    assert_common_headers(page, DASHBOARD_POLICY)
    assert_common_headers(script, DASHBOARD_POLICY)
    assert "default-src 'self'" in DASHBOARD_POLICY
    assert "unsafe-inline" not in DASHBOARD_POLICY
    assert "no-store" not in page.headers["cache-control"]


def test_dashboard_page_has_no_inline_code(client: TestClient) -> None:
    """Inline scripts, styles and event handlers would break under the policy."""
    page = client.get("/").text

    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) is None
    assert "<style" not in page
    assert re.search(r"\s(style|on[a-z]+)=", page) is None


def test_docs_headers_and_no_inline_script(client: TestClient) -> None:
    page = client.get("/docs")
    start = client.get("/docs/start.js")
    asset = client.get("/docs-assets/swagger-ui.css")

    assert page.status_code == 200
    assert_common_headers(page, DOCS_POLICY)
    assert_common_headers(asset, DOCS_POLICY)
    assert "unsafe-inline" not in DOCS_POLICY
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) is None
    assert start.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle(" in start.text


def test_api_response_headers(client: TestClient) -> None:
    """Tenant data is never stored by a cache; JSON responses allow no content at all."""
    response = client.get("/v1/jobs")

    assert response.status_code == 200
    assert_common_headers(response, API_POLICY)
    assert response.headers["cache-control"] == "no-store"


def test_operations_endpoints_headers(client: TestClient) -> None:
    for path in ("/healthz", "/openapi.json"):
        response = client.get(path)
        assert_common_headers(response, API_POLICY)
        assert response.headers.get("cache-control") != "no-store", path


def test_error_responses_headers(configure: Configure, monkeypatch: pytest.MonkeyPatch) -> None:
    """404, 401 and 500 problem details carry the same headers as successful responses."""

    def fail(*args: Any) -> None:
        raise RuntimeError("unexpected")

    settings = configure(require_keys=True)
    app = create_app(settings)
    with client_for(app, raise_server_exceptions=False) as client:
        not_found = client.get("/v1/jobs/unknown")
        no_route = client.get("/v1/nothing-here")
        monkeypatch.setattr(jobs, "get_job", fail)
        server_error = client.get("/v1/jobs/any")
    with TestClient(app) as anonymous:
        unauthorized = anonymous.get("/v1/jobs")

    for response, status in (
        (not_found, 404),
        (no_route, 404),
        (unauthorized, 401),
        (server_error, 500),
    ):
        assert_problem(response, status)
        assert_common_headers(response, API_POLICY)
        assert response.headers["cache-control"] == "no-store", status


def test_history_etag_still_gives_304(client: TestClient, train: Train) -> None:
    """no-store stops caches keeping the history; a client that keeps the ETag still
    gets a 304 for an unchanged history."""
    job = submit(client, TEA_SPEC)
    train(job["id"])
    url = f"/v1/jobs/{job['id']}/history"

    first = client.get(url)
    unchanged = client.get(url, headers={"If-None-Match": first.headers["etag"]})

    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    assert unchanged.status_code == 304
    assert unchanged.headers["etag"] == first.headers["etag"]
    assert unchanged.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://steep.example.com", "max-age=31536000"),
        ("HTTPS://steep.example.com/", "max-age=31536000"),
        ("http://steep.example.com", None),
        (None, None),
    ],
)
def test_strict_transport_only_for_https(
    configure: Configure, public_url: str | None, expected: str | None
) -> None:
    settings: Settings = configure(public_url=public_url)

    with client_for(create_app(settings)) as client:
        for path in ("/", "/v1/jobs", "/v1/jobs/unknown"):
            response = client.get(path)
            assert response.headers.get("strict-transport-security") == expected, path
