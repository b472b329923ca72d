"""``steep datasets``: upload and list datasets on a running steep service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from services.cli.output import table_console
from services.cli.remote import EXIT_BAD_INPUT, JsonOption, UrlOption, connect, fail

app = typer.Typer(
    name="datasets",
    help="Upload and list datasets on a running steep service.",
    no_args_is_help=True,
)
console = table_console()

_LIST_PAGE_SIZE = 500


@app.command()
def upload(
    path: Annotated[
        Path, typer.Argument(help="The data file: .csv, .npz or .json.", metavar="FILE")
    ],
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="CSV only: the target column, or comma-separated columns. "
            "Default: the last column.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name to show. Default: the file name without suffix."),
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a data file and print the dataset's id, task and columns.

    Exit codes:
    0 uploaded, or already uploaded
    2 the file was rejected or cannot be read, or no valid API key was sent
    3 the service could not be reached
    """
    if not path.is_file():
        fail(f"Cannot read {path}: no such file", EXIT_BAD_INPUT)
    with connect(url) as client:
        dataset, created = client.upload_dataset_with_status(path, name=name, target=target)
    if as_json:
        console.print_json(json.dumps(dataset))
        return
    if not created:
        console.print(
            f"{escape(str(path))} is already stored as dataset [bold]{dataset['id']}[/bold] "
            f"({escape(repr(dataset['name']))}); no copy was stored",
            highlight=False,
        )
    else:
        console.print(f"dataset [bold]{dataset['id']}[/bold] ({escape(repr(dataset['name']))})")
    console.print(_summary(dataset), highlight=False, markup=False)
    console.print(f'use it in a job spec as "dataset": "{dataset["id"]}"', markup=False)


@app.command("ls")
def list_datasets(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """List the built-in datasets and your uploads.

    Exit codes:
    0 listed
    2 no valid API key was sent
    3 the service could not be reached
    """
    items: list[dict[str, Any]] = []
    with connect(url) as client:
        base_url = client.base_url
        cursor = None
        while True:
            page = client.list_datasets(limit=_LIST_PAGE_SIZE, cursor=cursor)
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
    if as_json:
        console.print_json(json.dumps(items))
        return
    table = Table(title=f"datasets on {base_url}")
    for column in ("id", "name", "task", "samples", "features", "outputs", "created"):
        table.add_column(column, justify="right" if column in ("samples", "features") else "left")
    for item in items:
        table.add_row(
            escape(item["id"]),
            escape(item["name"]),
            item["task"],
            str(item["n_samples"]),
            str(item["n_features"]),
            str(item["n_outputs"]),
            item["created_at"][:19],
        )
    console.print(table)


def _summary(dataset: dict[str, Any]) -> str:
    lines = [
        f"  task {dataset['task']}, {dataset['n_samples']} samples, "
        f"{dataset['n_features']} features, {dataset['n_outputs']} outputs",
        f"  target {', '.join(dataset.get('target_names') or [])}",
    ]
    if dataset.get("classes") is not None:
        lines.append(f"  classes {', '.join(map(str, dataset['classes'][:20]))}")
    for column in dataset.get("columns") or []:
        if column["type"] == "text":
            categories = column["categories"]
            lines.append(f"  text column {column['name']}: {len(categories)} categories")
    missing = dataset.get("missing_values")
    if missing:
        lines.append(
            f"  {missing['count']} missing values (first: row {missing['row']}, column "
            f"{missing['column']}); jobs need preprocessing.impute"
        )
    return "\n".join(lines)
