"""Request body limits: a declared or streamed body above max_request_bytes is a 413
problem before anything is stored, and dataset uploads are held to max_upload_bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from services.api.upload_form import FORM_OVERHEAD_BYTES
from tests.services.api.conftest import assert_problem
from tests.services.auth import client_for
from tests.services.quotas.conftest import TEA_SPEC, MakeApp, count_datasets, count_jobs

REQUEST_LIMIT = 2000
UPLOAD_LIMIT = 64 * 1024


def padded_spec(n_bytes: int) -> bytes:
    """TEA_SPEC as JSON, padded with tags to between ``n_bytes`` and 60 bytes more."""
    tags: dict[str, str] = {}
    body = json.dumps(TEA_SPEC).encode()
    while len(body) < n_bytes:
        tags[f"tag{len(tags)}"] = "x" * 40
        body = json.dumps({**TEA_SPEC, "tags": tags}).encode()
    return body


def chunks(body: bytes, size: int = 500) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def csv_file(n_bytes: int) -> dict[str, Any]:
    rows = b"a,b,y\n" + b"1.5,2.5,0\n2.5,1.5,1\n" * (n_bytes // 20 + 1)
    return {"file": ("big.csv", rows)}


def test_declared_body_over_limit_rejected(make_app: MakeApp) -> None:
    """A Content-Length above max_request_bytes is a 413 naming the size and the limit."""
    app = make_app(max_request_bytes=REQUEST_LIMIT)
    body = padded_spec(5000)
    with client_for(app, tenant="tenant-a") as client:
        response = client.post(
            "/v1/jobs", content=body, headers={"content-type": "application/json"}
        )

    problem = assert_problem(response, 413)
    assert f"the request body is {len(body):,} bytes" in problem["detail"]
    assert "limit of 2,000 bytes (STEEP_MAX_REQUEST_BYTES)" in problem["detail"]
    assert response.headers["X-Request-ID"] == problem["request_id"]
    assert count_jobs(app.state.settings, "tenant-a") == 0


def test_streamed_body_over_limit_rejected(make_app: MakeApp) -> None:
    """A chunked body without Content-Length is cut off with a 413 once it passes the limit."""
    app = make_app(max_request_bytes=REQUEST_LIMIT)
    with client_for(app, tenant="tenant-a") as client:
        response = client.post(
            "/v1/jobs",
            content=chunks(padded_spec(5000)),
            headers={"content-type": "application/json"},
        )

    problem = assert_problem(response, 413)
    assert "grew, as it streamed, past" in problem["detail"]
    assert "limit of 2,000 bytes" in problem["detail"]
    assert count_jobs(app.state.settings, "tenant-a") == 0


def test_body_within_limit_accepted(make_app: MakeApp) -> None:
    """Bodies up to max_request_bytes pass, declared or streamed."""
    app = make_app(max_request_bytes=REQUEST_LIMIT)
    body = padded_spec(REQUEST_LIMIT - 60)
    assert len(body) <= REQUEST_LIMIT
    headers = {"content-type": "application/json"}
    with client_for(app, tenant="tenant-a") as client:
        declared = client.post("/v1/jobs", content=body, headers=headers)
        streamed = client.post("/v1/jobs", content=chunks(body), headers=headers)

    assert declared.status_code == 202, declared.text
    assert streamed.status_code == 202, streamed.text


def test_upload_uses_upload_limit(make_app: MakeApp) -> None:
    """A dataset upload far above max_request_bytes but within max_upload_bytes is stored."""
    app = make_app(max_request_bytes=REQUEST_LIMIT, max_upload_bytes=UPLOAD_LIMIT)
    with client_for(app, tenant="tenant-a") as client:
        response = client.post("/v1/datasets", files=csv_file(UPLOAD_LIMIT // 2))

    assert response.status_code == 201, response.text
    assert count_datasets(app.state.settings) == 1


def test_upload_over_limit_stores_nothing(make_app: MakeApp) -> None:
    """An upload above max_upload_bytes is a 413, declared or streamed, and stores nothing."""
    app = make_app(max_request_bytes=REQUEST_LIMIT, max_upload_bytes=UPLOAD_LIMIT)
    too_large = UPLOAD_LIMIT + FORM_OVERHEAD_BYTES + 1000
    with client_for(app, tenant="tenant-a") as client:
        declared = client.post("/v1/datasets", files=csv_file(too_large))
        file_over = client.post("/v1/datasets", files=csv_file(UPLOAD_LIMIT + 1000))

    problem = assert_problem(declared, 413)
    assert "upload limit of 65,536 bytes for the file" in problem["detail"]
    assert "STEEP_MAX_UPLOAD_BYTES" in problem["detail"]
    assert_problem(file_over, 413)
    assert count_datasets(app.state.settings) == 0


def test_streamed_upload_over_limit_stores_nothing(make_app: MakeApp) -> None:
    """A chunked multipart body above the upload limit is cut off with a 413."""
    app = make_app(max_request_bytes=REQUEST_LIMIT, max_upload_bytes=UPLOAD_LIMIT)
    boundary = "quota-test-boundary"
    rows = csv_file(UPLOAD_LIMIT + FORM_OVERHEAD_BYTES + 1000)["file"][1]
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\n"
        ).encode()
        + rows
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    with client_for(app, tenant="tenant-a") as client:
        response = client.post("/v1/datasets", content=chunks(body, 8192), headers=headers)

    problem = assert_problem(response, 413)
    assert "upload limit of 65,536 bytes" in problem["detail"]
    assert count_datasets(app.state.settings) == 0
