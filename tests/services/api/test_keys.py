"""API keys: who gets a 401, the keyless local mode, revocation, and keys kept out of logs
and out of the database."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.api.app import create_app
from services.keys import create_key, revoke_key
from services.settings import Settings
from services.store.db import session_scope
from services.store.models import ApiKey
from tests.services.api.conftest import TEA_SPEC, assert_problem, submit
from tests.services.auth import bearer, client_for, tenant_key
from tests.services.conftest import Configure

EMBEDDED_ONLY = pytest.mark.parametrize("mode", ["embedded"], indirect=True)
STEEP = [sys.executable, "-c", "from services.cli import main; main()"]


def assert_unauthorized(response: httpx.Response) -> dict[str, Any]:
    problem = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    return problem


def test_missing_key_is_401(configure: Configure) -> None:
    """Distributed mode always needs a key, and embedded mode needs one with require_keys."""
    settings = configure(require_keys=True)
    with TestClient(create_app(settings)) as anonymous:
        for path in ("/v1/jobs", "/v1/datasets", "/v1/sweeps", "/v1/experiments"):
            problem = assert_unauthorized(anonymous.get(path))
            assert "API key" in problem["detail"]
        assert_unauthorized(anonymous.post("/v1/jobs", json=TEA_SPEC))


def test_missing_key_checked_before_body(configure: Configure) -> None:
    """Without a key, a body that is not JSON (or too large to parse) is a 401, not a 422."""
    settings = configure(require_keys=True)
    with TestClient(create_app(settings)) as anonymous:
        not_json = anonymous.post(
            "/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        wrong_key = anonymous.post(
            "/v1/jobs",
            content=b"{not json",
            headers={"Content-Type": "application/json", **bearer("steep_" + "y" * 43)},
        )

    assert_unauthorized(not_json)
    assert_unauthorized(wrong_key)


def test_distributed_loopback_needs_key(settings: Settings, mode: str) -> None:
    """Only embedded mode on loopback may take requests without a key."""
    with TestClient(create_app(settings)) as anonymous:
        response = anonymous.get("/v1/jobs")
    assert response.status_code == (200 if mode == "embedded" else 401), response.text


@EMBEDDED_ONLY
def test_embedded_public_address_needs_key(configure: Configure) -> None:
    """Listening on anything but loopback turns keys on, also in embedded mode."""
    settings = configure(host="0.0.0.0")
    assert settings.keys_required
    with TestClient(create_app(settings)) as anonymous:
        assert_unauthorized(anonymous.get("/v1/jobs"))


@EMBEDDED_ONLY
@pytest.mark.parametrize(
    ("public_url", "required"),
    [
        ("https://steep.example.org", True),
        ("http://203.0.113.7:8000", True),
        ("http://localhost:9000", False),
        ("http://127.0.0.1:9000", False),
        ("http://[::1]:9000", False),
    ],
)
def test_public_url_elsewhere_needs_key(
    configure: Configure, public_url: str, required: bool
) -> None:
    """A public URL with another host means a proxy forwards other users' requests."""
    settings = configure(public_url=public_url)

    assert settings.keys_required is required


@EMBEDDED_ONLY
def test_keyless_loopback_is_local_tenant(settings: Settings) -> None:
    """Keyless requests on loopback see the work of the tenant 'local' and no one else's."""
    app = create_app(settings)
    app.state.enqueue = lambda job_id: True
    with client_for(app) as local, client_for(app, "other") as other:
        mine = submit(local, TEA_SPEC)
        theirs = submit(other, TEA_SPEC)
    with TestClient(app) as anonymous:
        assert anonymous.get(f"/v1/jobs/{mine['id']}").status_code == 200
        assert anonymous.get(f"/v1/jobs/{theirs['id']}").status_code == 404
        listed = [job["id"] for job in anonymous.get("/v1/jobs").json()["items"]]
    assert listed == [mine["id"]]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer steep_not-a-key-anyone-was-given",
        "Bearer something-else",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer    ",
        "steep_abc",
    ],
)
def test_wrong_or_malformed_key_is_401(settings: Settings, header: str) -> None:
    """A key that is present is always checked, so keyless local mode does not hide a typo."""
    with TestClient(create_app(settings), headers={"Authorization": header}) as client:
        assert_unauthorized(client.get("/v1/jobs"))


def test_revoked_key_is_401(
    settings: Settings,
) -> None:
    app = create_app(settings)
    app.state.enqueue = lambda job_id: True
    leaked = create_key(settings, "acme", name="laptop")
    spare = tenant_key(settings, "acme")
    with TestClient(app, headers=bearer(leaked.secret)) as client:
        job = submit(client, TEA_SPEC)

    revoke_key(settings, leaked.info.id)

    with TestClient(app, headers=bearer(leaked.secret)) as client:
        assert_unauthorized(client.get(f"/v1/jobs/{job['id']}"))
    with TestClient(app, headers=bearer(spare)) as client:
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200


def test_revoked_key_stops_after_cache_lifetime(configure: Configure) -> None:
    """An API process reuses a valid key for key_cache_seconds, then rejects the revoked key."""
    settings = configure(key_cache_seconds=0.5)
    app = create_app(settings)
    created = create_key(settings, "acme")
    with TestClient(app, headers=bearer(created.secret)) as client:
        assert client.get("/v1/jobs").status_code == 200
        revoke_key(settings, created.info.id)
        within = client.get("/v1/jobs")
        time.sleep(0.6)
        after = client.get("/v1/jobs")

    assert within.status_code == 200
    assert_unauthorized(after)


def test_database_stores_only_key_hash(settings: Settings) -> None:
    created = create_key(settings, "acme")

    with session_scope(settings.resolved_database_url, write=False) as session:
        row = session.scalars(select(ApiKey).where(ApiKey.id == created.info.id)).one()
        stored = [str(value) for value in vars(row).values()]

    assert row.secret_sha256 == hashlib.sha256(created.secret.encode()).hexdigest()
    assert not any(created.secret in value for value in stored)
    assert created.secret.startswith(row.prefix)
    assert len(row.prefix) < len(created.secret) // 3


def test_operations_pages_need_no_key(configure: Configure) -> None:
    settings = configure(require_keys=True)
    with TestClient(create_app(settings)) as anonymous:
        for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/"):
            assert anonymous.get(path).status_code == 200, path


def test_openapi_declares_bearer_auth(
    settings: Settings,
) -> None:
    document = create_app(settings).openapi()

    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            assert {"apiKey": []} in operation.get("security", []), (method, path)
            assert "401" in operation["responses"], (method, path)


def test_keys_absent_from_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture, train: Any
) -> None:
    """Valid, wrong and revoked keys on good and failing requests leave no trace in logs."""
    app = create_app(settings)
    good = create_key(settings, "acme")
    revoked = create_key(settings, "acme")
    revoke_key(settings, revoked.info.id)
    wrong = "steep_" + "x" * 43
    caplog.set_level(logging.DEBUG)

    with TestClient(app, headers=bearer(good.secret), raise_server_exceptions=False) as client:
        job = submit(client, TEA_SPEC)
        train(job["id"])
        client.get(f"/v1/jobs/{job['id']}/history")
        client.get("/v1/jobs/not-a-job")
        client.post("/v1/jobs", json={"dataset": "builtin:tea"})
    for secret in (wrong, revoked.secret):
        with TestClient(app, headers=bearer(secret)) as client:
            client.get("/v1/jobs")

    assert caplog.records, "nothing was logged, so the check below proves nothing"
    for secret in (good.secret, revoked.secret, wrong):
        assert secret not in caplog.text
        assert secret[len("steep_") :] not in caplog.text


def test_api_process_debug_logs_omit_keys(settings: Settings, tmp_path: Path) -> None:
    """The real ``steep api`` process, with uvicorn's access log on and DEBUG JSON logs."""
    secret = tenant_key(settings, "acme")
    port = _free_port()
    log_path = tmp_path / "api.log"
    environment = {**os.environ, "STEEP_LOG_LEVEL": "DEBUG", "STEEP_LOG_JSON": "true"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*STEEP, "api", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(base_url, process)
        with httpx.Client(base_url=base_url, headers=bearer(secret), timeout=10) as client:
            assert client.post("/v1/jobs", json=TEA_SPEC).status_code == 202
            client.get("/v1/jobs/unknown")
        with httpx.Client(base_url=base_url, headers=bearer(secret + "x"), timeout=10) as client:
            assert client.get("/v1/jobs").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)

    output = log_path.read_text()
    assert "/v1/jobs" in output, output  # the access log is there
    assert secret not in output


@EMBEDDED_ONLY
def test_keys_cli_create_list_revoke(settings: Settings) -> None:
    """``steep keys create`` prints the key once on stdout; ``ls`` never shows it; ``revoke``
    turns it off."""
    created = _steep("keys", "create", "--tenant", "acme", "--name", "ci")
    secret = created.stdout.strip()
    listed = _steep("keys", "ls", "--json")
    app = create_app(settings)

    assert secret.startswith("steep_")
    assert "\n" not in secret
    assert "not shown again" in created.stderr
    assert secret not in listed.stdout
    (entry,) = [key for key in json.loads(listed.stdout) if key["tenant"] == "acme"]
    assert entry["name"] == "ci"
    assert entry["revoked_at"] is None
    with TestClient(app, headers=bearer(secret)) as client:
        assert client.get("/v1/jobs").status_code == 200

    revoked = _steep("keys", "revoke", entry["id"])

    assert "revoked" in revoked.stdout
    with TestClient(app, headers=bearer(secret)) as client:
        assert_unauthorized(client.get("/v1/jobs"))
    assert _steep("keys", "ls", "--json").stdout.count(entry["id"]) == 0
    assert _steep("keys", "ls", "--all", "--json").stdout.count(entry["id"]) == 1
    assert _steep("keys", "revoke", "key_unknown", check=False).returncode == 4
    bad = _steep("keys", "create", "--tenant", "Not Valid", check=False)
    assert bad.returncode == 2
    assert "tenant must be" in bad.stderr


@EMBEDDED_ONLY
def test_keys_cli_revoke_twice_prints_already_revoked(settings: Settings) -> None:
    """A second ``steep keys revoke`` of a key prints that it was already revoked, and exits 0."""
    key_id = create_key(settings, "acme").info.id

    first = _steep("keys", "revoke", key_id)
    second = _steep("keys", "revoke", key_id)

    assert first.stdout.strip() == f"key {key_id} of tenant 'acme' revoked"
    assert f"key {key_id} of tenant 'acme' was already revoked at " in second.stdout
    assert second.stdout.strip().endswith(" UTC")


@EMBEDDED_ONLY
def test_keys_cli_finds_data_dir_or_says_none(settings: Settings, tmp_path: Path) -> None:
    """Run in a folder with no database, ``steep keys`` reports it and creates no file;
    ``--data-dir`` names the folder of ``steep serve --data-dir``."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("STEEP_DATABASE_URL", "STEEP_DATA_DIR")
    }
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    served = Path(settings.resolved_database_url.removeprefix("sqlite:///")).parent

    lost = _steep("keys", "create", "--tenant", "acme", check=False, cwd=empty, env=environment)
    found = _steep(
        "keys", "create", "--tenant", "acme", "--data-dir", str(served), cwd=empty, env=environment
    )

    assert lost.returncode == 3
    assert "no steep database" in lost.stderr
    assert "--data-dir" in lost.stderr
    assert list(empty.iterdir()) == []
    with TestClient(create_app(settings), headers=bearer(found.stdout.strip())) as client:
        assert client.get("/v1/jobs").status_code == 200


def _steep(
    *args: str,
    check: bool = True,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*STEEP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env if env is not None else dict(os.environ),
        cwd=cwd,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "steep api exited"
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"steep api at {base_url} did not answer within 30 s")
