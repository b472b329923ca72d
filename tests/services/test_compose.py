"""docker-compose.yml and the Dockerfile agree with steep's settings and command line.

No Docker engine runs in the tests, so these check the files themselves: every
STEEP_* variable is a setting, every command parses as a `steep` command, and
the ports, hosts and dependencies line up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from sqlalchemy.engine import make_url

from services.cli import app as steep_app
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
STEEP_SERVICES = ("migrate", "api", "worker", "reaper")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    content = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(content, dict)
    return content


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _steep_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment must be a mapping, not a list"
    return {name: str(value) for name, value in environment.items()}


def _resolve_command(arguments: list[str]) -> Any:
    """Return the command that ``steep <arguments>`` runs, after parsing its options.

    Typer's command classes mirror click's. Parsing raises a usage error for an
    unknown option or a bad option value.
    """
    command: Any = typer.main.get_command(steep_app)
    context = command.make_context("steep", [], resilient_parsing=True)
    remaining = list(arguments)
    while isinstance(command, typer.core.TyperGroup):
        assert remaining, f"steep {' '.join(arguments)} names a group, not a command"
        name, *remaining = remaining
        subcommand = command.get_command(context, name)
        assert subcommand is not None, f"steep has no command {name!r}"
        context = subcommand.make_context(name, [], parent=context, resilient_parsing=True)
        command = subcommand
    command.make_context(command.name, remaining, parent=context)
    return command


def test_services_present(compose: dict[str, Any]) -> None:
    """The stack has the database, the broker and every steep process."""
    services = _services(compose)

    for name in ("postgres", "redis", *STEEP_SERVICES):
        assert name in services, f"service {name} is missing"


def test_steep_variables_are_settings(compose: dict[str, Any]) -> None:
    """Every STEEP_* variable names a Settings field and contains a valid value for it."""
    fields = set(Settings.model_fields)

    for name in STEEP_SERVICES:
        environment = _steep_environment(_services(compose)[name])
        values = {}
        for variable, value in environment.items():
            assert variable.startswith("STEEP_"), f"{name}: {variable} is not a steep setting"
            field = variable.removeprefix("STEEP_").lower()
            assert field in fields, f"{name}: {variable} is not a Settings field"
            values[field] = value
        Settings(**values)


def test_commands_are_steep_commands(compose: dict[str, Any]) -> None:
    """Each steep service runs a command that the steep CLI parses."""
    expected = {"migrate": "upgrade", "api": "api", "worker": "worker", "reaper": "reaper"}

    for name, command_name in expected.items():
        command = _services(compose)[name]["command"]
        assert command[0] == "steep", f"{name}: command must start with steep, got {command}"
        assert _resolve_command(command[1:]).name == command_name


def test_dockerfile_default_command_parses() -> None:
    """The image's default command is a steep command the CLI accepts."""
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    cmd_line = next(line for line in dockerfile if line.startswith("CMD "))
    command = yaml.safe_load(cmd_line.removeprefix("CMD "))

    assert command[0] == "steep"
    assert _resolve_command(command[1:]).name == "serve"


def test_dockerfile_base_and_user() -> None:
    """The image builds on python:3.11-slim and runs as a user other than root."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]

    assert lines[next(i for i, line in enumerate(lines) if line.startswith("FROM"))] == (
        "FROM python:3.11-slim"
    )
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


def test_api_port_matches(compose: dict[str, Any]) -> None:
    """The API listens on all interfaces, on the port compose publishes and checks."""
    api = _services(compose)["api"]
    environment = _steep_environment(api)
    port = environment["STEEP_PORT"]

    assert environment["STEEP_HOST"] == "0.0.0.0"
    assert [mapping.split(":")[-1] for mapping in api["ports"]] == [port]
    assert f"127.0.0.1:{port}/healthz" in " ".join(api["healthcheck"]["test"])
    assert environment["STEEP_PUBLIC_URL"].endswith(f":{api['ports'][0].split(':')[0]}")


def test_urls_point_at_services(compose: dict[str, Any]) -> None:
    """The database and broker URLs name the compose services and the database's user."""
    services = _services(compose)
    postgres = services["postgres"]["environment"]

    for name in STEEP_SERVICES:
        environment = _steep_environment(services[name])
        database = make_url(environment["STEEP_DATABASE_URL"])
        assert (database.drivername, database.host, database.port) == (
            "postgresql+psycopg",
            "postgres",
            5432,
        )
        assert (database.username, database.password, database.database) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )
        assert environment["STEEP_BROKER_URL"].startswith("redis://redis:6379/")


def test_processes_wait_for_migrations(compose: dict[str, Any]) -> None:
    """The API, workers and reaper start only after the migration step succeeded."""
    services = _services(compose)

    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "reaper"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
        assert depends_on["redis"]["condition"] == "service_healthy"


def test_worker_scalable(compose: dict[str, Any]) -> None:
    """`--scale worker=N` works: the worker has no fixed name and publishes no port."""
    worker = _services(compose)["worker"]

    assert "container_name" not in worker
    assert "ports" not in worker
    assert "hostname" not in worker
