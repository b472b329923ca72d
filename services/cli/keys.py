"""``steep keys``: create, list and revoke API keys, straight in the service's database.

These are operator commands: they run where the settings name the database (the
same ``STEEP_DATABASE_URL`` as the API), not through the API. A key is printed
once, when it is created; the database keeps only its SHA-256.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.cli.database import DataDirOption, database_errors, operator_settings
from services.cli.output import table_console
from services.errors import InvalidInput, NotFound
from services.keys import KeyInfo, create_key, list_keys, revoke_key

__all__ = ["app"]

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
console = table_console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 4


@app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    name: Annotated[
        str | None, typer.Option(help="A label to tell keys apart, for example the key's owner.")
    ] = None,
    operator: Annotated[
        bool, typer.Option(help="Also allow /metrics, which covers every tenant.")
    ] = False,
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the key as JSON.")] = False,
) -> None:
    """Create a key for TENANT and print it. It is shown only this once.

    Exit codes:
    0 created
    2 the tenant name is not valid
    3 the database could not be read
    """
    settings = operator_settings(data_dir)
    try:
        with database_errors(settings):
            created = create_key(settings, tenant, name=name, operator=operator)
    except InvalidInput as error:
        error_console.print(f"[red]{error.message}[/red]", markup=True, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        print(json.dumps({**_as_dict(created.info), "key": created.secret}))
        return
    # The key alone on stdout, so that `KEY=$(steep keys create ...)` works.
    print(created.secret)
    error_console.print(
        f"key {created.info.id} for tenant {tenant!r} created; store it now, it is not "
        "shown again. Clients send it as 'Authorization: Bearer <key>' (the CLI reads "
        "STEEP_API_KEY).",
        highlight=False,
        markup=False,
    )


@app.command("ls")
def list_command(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False,
) -> None:
    """List API keys, oldest first, by id and first characters; never the keys themselves.

    Exit codes:
    0 listed
    3 the database could not be read
    """
    settings = operator_settings(data_dir)
    with database_errors(settings):
        keys = list_keys(settings, tenant, include_revoked=revoked)
    if as_json:
        print(json.dumps([_as_dict(key) for key in keys]))
        return
    table = Table(title="API keys")
    # The id is what `steep keys revoke` takes, so it is never cut short.
    table.add_column("id", no_wrap=True, min_width=20)
    for column in ("tenant", "name", "starts with", "operator", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.id,
            key.tenant,
            key.name or "",
            key.prefix + "...",
            "yes" if key.operator else "",
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    console.print(table)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, from `steep keys ls`.")],
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a key, so that requests with it get 401.

    A revoked key stops working within key_cache_seconds (STEEP_KEY_CACHE_SECONDS,
    default 2 s), because each API process reuses a key it found valid for that
    long before it looks the key up again.

    Exit codes:
    0 revoked, or already revoked
    3 the database could not be read
    4 no key has that id
    """
    settings = operator_settings(data_dir)
    try:
        with database_errors(settings):
            revoked = revoke_key(settings, key_id)
    except NotFound as error:
        error_console.print(f"[red]{error.message}[/red]", highlight=False)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    key = revoked.info
    if revoked.already_revoked and key.revoked_at is not None:
        message = (
            f"key {key.id} of tenant {key.tenant!r} was already revoked "
            f"at {key.revoked_at:%Y-%m-%d %H:%M} UTC"
        )
    else:
        message = f"key {key.id} of tenant {key.tenant!r} revoked"
    console.print(message, highlight=False, markup=False)


def _as_dict(key: KeyInfo) -> dict[str, object]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "prefix": key.prefix,
        "operator": key.operator,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }
