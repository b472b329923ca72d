"""Commands that run the engine in this process, with no server: ``train`` and ``predict``.

Exit codes: 0 on success, 1 when training diverged, 2 for an invalid spec, invalid
data or a file that cannot be read or written.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from core.data import encode_classes, seed_stream
from core.datasets import load_builtin
from core.encoding import Encoding
from core.fit import fit, infer_task
from core.metrics import mae, r2_score
from core.model import Model
from core.paramfile import load_model, save_json, save_npz
from core.spec import JobSpec, Task, parse_spec
from core.split import split_indices
from core.tabular import read_features, read_table
from core.training import BatchProgress, Callback, FitResult, Trainer

app = typer.Typer()
console = Console()
stderr_console = Console(stderr=True)

EXIT_DIVERGED = 1
EXIT_INVALID_INPUT = 2

# core.data draws the validation split, the initial weights and the training order
# from streams 0 to 2 of the spec's seed. The held-out test split uses its own
# stream, so it does not move when the spec changes how the others are used.
TEST_SPLIT_STREAM = 3


class _InputError(Exception):
    """A spec, data file or path that the user must fix; the command exits 2."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


# steep train ----------------------------------------------------------------


@dataclass
class _TrainingData:
    """The samples to train and test on, and what is known about them before training."""

    name: str
    x: np.ndarray  # (n_samples, n_features) float64
    y: np.ndarray  # (n_samples,) or (n_samples, n_outputs)
    task: Task
    classes: list[Any] | None  # set when y contains indices into it (built-in datasets)
    feature_names: list[str]
    encoding: Encoding | None = None  # the input columns, when a text column was one-hot encoded


@app.command()
def train(
    spec_path: Annotated[
        Path,
        typer.Argument(
            metavar="SPEC.json", exists=True, dir_okay=False, help="The job spec, a JSON file."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A CSV, NPZ or JSON file to train on instead of the spec's built-in dataset.",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="The CSV target column, or several separated by commas. Default: the last column."
        ),
    ] = None,
    test_split: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.95,
            help="Fraction of the samples to hold out for the test metrics; 0 holds out nothing.",
        ),
    ] = 0.2,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the trained parameters: .json writes JSON, anything else "
            "NPZ. Default: the spec's file name with suffix .npz, in the current directory."
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object with the results and no progress bar."),
    ] = False,
) -> None:
    """Train the network that SPEC.json describes, report its metrics and save its parameters.

    Before training, a part of the data drawn with the spec's seed is held out.
    It is used only for the test metrics and keeps the class proportions for classification.

    Exit codes:
    0 trained, and the parameter file was written
    1 training diverged, so no parameter file was written
    2 the spec or the data is invalid, or a file cannot be read or written
    """
    out_path = out if out is not None else Path(spec_path.stem + ".npz")
    try:
        spec = _read_spec(spec_path, data)
        _check_out_path(out_path)
        samples = _read_training_data(spec, data, target)
        train_index, test_index = _test_split(spec, samples, test_split)
        result = _fit(spec, samples, train_index, show_progress=not json_output)
        metrics = _final_metrics(result, samples, test_index)
    except _InputError as error:
        _fail(error, json_output)

    summary = _summary(spec_path, samples, result, metrics, len(train_index), len(test_index))
    if result.stop_reason == "diverged":
        _report(summary, json_output)
        if not json_output:
            stderr_console.print(_error_text(str(result.stop_message)), soft_wrap=True)
            stderr_console.print("No parameter file was written. A lower optimizer.lr often helps.")
        raise typer.Exit(EXIT_DIVERGED)

    try:
        _save(result.model, out_path)
    except OSError as error:
        _fail(_InputError(f"cannot write {out_path}: {error}"), json_output)
    summary["out"] = str(out_path)
    _report(summary, json_output)


def _read_spec(spec_path: Path, data: Path | None) -> JobSpec:
    """Parse and validate the spec file.

    With ``--data``, a spec without ``dataset`` gets the data file's name, because
    the schema requires the field but the file is what is trained on.
    """
    try:
        content = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise _InputError(f"cannot read {spec_path}: {error}") from error
    except json.JSONDecodeError as error:
        raise _InputError(f"{spec_path} is not valid JSON: {error}") from error
    if not isinstance(content, dict):
        raise _InputError(f"{spec_path} must contain a JSON object, got {type(content).__name__}")
    if data is not None:
        content.setdefault("dataset", data.name)
    try:
        return parse_spec(content)
    except ValidationError as error:
        details = [_describe_spec_error(item, content) for item in error.errors()]
        raise _InputError(f"{spec_path} is not a valid job spec:", details) from error


def _describe_spec_error(item: Any, content: dict[str, Any]) -> str:
    """Format one validation error as ``field.path: message, got value``."""
    message = str(item["msg"]).removeprefix("Value error, ")
    value = item.get("input")
    if item["type"] != "missing" and isinstance(value, str | int | float | bool | None):
        message += f", got {json.dumps(value)}"
    return f"{_field_path(item['loc'], content)}: {message}"


def _field_path(loc: tuple[int | str, ...], content: Any) -> str:
    """Join an error location into a dotted path into the spec (``model.layers.0.units``).

    Pydantic puts the ``type`` of a tagged union into the location, as in
    ``model.layers.0.dense.units``. Walking the submitted spec alongside the location
    distinguishes such tags from field names.
    """
    parts = []
    node = content
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        parts.append(str(part))
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return ".".join(parts) or "spec"


def _check_out_path(out_path: Path) -> None:
    """Fail before training, not after it, when the parameter file cannot be written."""
    folder = out_path.parent
    if not folder.is_dir():
        raise _InputError(f"cannot write {out_path}: the folder {folder} does not exist")
    if out_path.is_dir():
        raise _InputError(f"cannot write {out_path}: it is a folder")


def _read_training_data(spec: JobSpec, data: Path | None, target: str | None) -> _TrainingData:
    if data is None:
        if target is not None:
            raise _InputError("--target selects a column of --data, so it needs --data")
        return _builtin_data(spec)
    try:
        table = read_table(data, target=target, text_features=True)
    except (OSError, ValueError) as error:
        raise _InputError(f"cannot read {data}: {error}") from error
    return _TrainingData(
        name=str(data),
        x=table.x,
        y=table.y,
        task=spec.resolved_task(infer_task(table.y)),
        classes=None,
        feature_names=table.feature_names,
        encoding=table.encoding,
    )


def _builtin_data(spec: JobSpec) -> _TrainingData:
    try:
        dataset = load_builtin(spec.dataset, seed=spec.training.seed)
    except ValueError as error:
        raise _InputError(
            f"the spec's dataset {spec.dataset!r} is not built in; "
            "pass --data FILE to train on a file",
            [str(error)],
        ) from error
    return _TrainingData(
        name=f"builtin:{dataset.name}",
        x=dataset.x,
        y=dataset.y,
        task=spec.resolved_task(dataset.task),
        classes=list(dataset.classes) if dataset.classes is not None else None,
        feature_names=list(dataset.feature_names),
    )


def _test_split(
    spec: JobSpec, samples: _TrainingData, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return train and test row indices; classification keeps class proportions."""
    labels = None
    try:
        if samples.task == "classification":
            labels, _ = encode_classes(samples.y, samples.classes)
        rng = seed_stream(spec.training.seed, TEST_SPLIT_STREAM)
        return split_indices(len(samples.x), fraction, rng, labels)
    except (TypeError, ValueError) as error:
        raise _InputError(f"--test-split {fraction}: {error}") from error


def _fit(
    spec: JobSpec, samples: _TrainingData, train_index: np.ndarray, show_progress: bool
) -> FitResult:
    def run(callback: Callback | None) -> FitResult:
        return fit(
            spec,
            samples.x[train_index],
            samples.y[train_index],
            task=samples.task,
            classes=samples.classes,
            feature_names=samples.feature_names,
            encoding=samples.encoding,
            callback=callback,
        )

    try:
        if not show_progress:
            return run(None)
        with _progress_bar() as progress:
            return run(_ProgressCallback(progress, spec.training.epochs))
    except (TypeError, ValueError) as error:
        raise _InputError(f"the data do not fit the spec: {error}") from error


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        TextColumn("batch {task.fields[batch]}/{task.fields[n_batches]}"),
        TextColumn("loss {task.fields[loss]:.4g}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
    )


class _ProgressCallback(Callback):
    """Moves one progress bar over all batches of all epochs and shows the latest loss."""

    def __init__(self, progress: Progress, epochs: int) -> None:
        self.progress = progress
        self.epochs = epochs
        self.task_id = progress.add_task(
            "training", total=None, epoch=0, epochs=epochs, batch=0, n_batches=0, loss=math.nan
        )

    def on_batch_end(self, trainer: Trainer, progress: BatchProgress) -> None:
        # n_batches is first known here; early stopping may end the bar before its total.
        self.progress.update(
            self.task_id,
            total=self.epochs * progress.n_batches,
            completed=(progress.epoch - 1) * progress.n_batches + progress.batch,
            epoch=progress.epoch,
            batch=progress.batch,
            n_batches=progress.n_batches,
            loss=progress.loss,
        )


def _final_metrics(
    result: FitResult, samples: _TrainingData, test_index: np.ndarray
) -> dict[str, float]:
    """Return the last epoch's train_ and val_ values and the test_ metrics, if any."""
    last = result.history[-1] if result.history else {}
    metrics = {key: value for key, value in last.items() if key.startswith(("train_", "val_"))}
    if len(test_index) == 0 or result.stop_reason == "diverged":
        return metrics
    try:
        metrics.update(_test_metrics(result.model, samples, test_index))
    except ValueError as error:
        raise _InputError(f"cannot predict the test split: {error}") from error
    return metrics


def _test_metrics(model: Model, samples: _TrainingData, test_index: np.ndarray) -> dict[str, float]:
    x_test, y_test = samples.x[test_index], samples.y[test_index]
    if model.task == "classification":
        if samples.classes is not None:
            truth = np.asarray(samples.classes, dtype=object)[y_test]
        else:
            truth = y_test.astype(object)
        return {"test_accuracy": float(np.mean(model.predict(x_test) == truth))}
    outputs = model.predict_outputs(x_test)  # (n_test, n_outputs)
    targets = y_test.astype(np.float64).reshape(len(y_test), -1)  # (n_test,) -> (n_test, 1)
    return {"test_r2": r2_score(outputs, targets), "test_mae": mae(outputs, targets)}


def _summary(
    spec_path: Path,
    samples: _TrainingData,
    result: FitResult,
    metrics: dict[str, float],
    n_train: int,
    n_test: int,
) -> dict[str, Any]:
    return {
        "spec": str(spec_path),
        "dataset": samples.name,
        "task": result.model.task,
        "n_train": n_train,
        "n_test": n_test,
        "n_parameters": result.n_parameters,
        "epochs_completed": result.epochs_completed,
        "stop_reason": result.stop_reason,
        "stop_message": result.stop_message,
        "monitor": result.monitor,
        "best_epoch": result.best_epoch,
        "best_value": result.best_value,
        "metrics": metrics,
        "training_seconds": sum(record.get("epoch_seconds", 0.0) for record in result.history),
        "out": None,
    }


def _save(model: Model, out_path: Path) -> None:
    if out_path.suffix.lower() == ".json":
        save_json(model, out_path)
    else:
        save_npz(model, out_path)


def _report(summary: dict[str, Any], json_output: bool) -> None:
    if json_output:
        _print_json(summary)
        return
    table = Table(title="Training result", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key in ("dataset", "task", "n_train", "n_test", "n_parameters", "epochs_completed"):
        table.add_row(key, str(summary[key]))
    stop = summary["stop_reason"]
    if summary["stop_message"]:
        stop += f" ({summary['stop_message']})"
    table.add_row("stop_reason", stop)
    if summary["best_epoch"] is not None:
        best = f"{summary['best_epoch']} ({summary['monitor']} {summary['best_value']:.6g})"
        table.add_row("best_epoch", best)
    for key, value in summary["metrics"].items():
        table.add_row(key, f"{value:.6g}")
    table.add_row("training_seconds", f"{summary['training_seconds']:.3g}")
    if summary["out"]:
        table.add_row("out", summary["out"])
    console.print(table)


# steep predict --------------------------------------------------------------


@app.command()
def predict(
    model_path: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            exists=True,
            dir_okay=False,
            help="A parameter file written by steep train (.npz or .json).",
        ),
    ],
    data: Annotated[
        Path,
        typer.Argument(
            metavar="DATA",
            exists=True,
            dir_okay=False,
            help="A CSV with a column per model feature (other columns are ignored), "
            'or an NPZ with array x, or JSON {"x": [[...], ...]}.',
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the predictions as one JSON list.")
    ] = False,
) -> None:
    """Predict with a trained model: one class label or value per row of DATA.

    Exit codes:
    0 predicted
    2 the model or the data cannot be read, or the data do not fit the model
    """
    try:
        model = _load_model(model_path)
        predictions = _predict(model, data)
    except _InputError as error:
        _fail(error, json_output)

    values = _plain_predictions(predictions)
    if json_output:
        _print_json(values)
        return
    lines = [
        ",".join(map(str, value)) if isinstance(value, list) else str(value) for value in values
    ]
    console.out("\n".join(lines), highlight=False)


def _load_model(model_path: Path) -> Model:
    try:
        return load_model(model_path)
    except (OSError, ValueError) as error:
        raise _InputError(f"cannot load {model_path}: {error}") from error


def _predict(model: Model, data: Path) -> np.ndarray:
    try:
        if model.encoding is not None and data.suffix.lower() == ".csv":
            return model.predict(_raw_csv_rows(data, [c.name for c in model.encoding.columns]))
        x = read_features(data, feature_names=model.feature_names)
        return model.predict(x)
    except (OSError, ValueError) as error:
        raise _InputError(f"cannot predict from {data}: {error}") from error


def _raw_csv_rows(data: Path, columns: list[str]) -> list[dict[str, str]]:
    """Read a CSV's rows as objects holding only the model's raw input columns.

    A model trained on text columns encodes these rows itself (``Model.encode``);
    other columns, such as the target, are dropped.
    """
    with data.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        missing = [name for name in columns if name not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"the CSV has no column {', '.join(map(repr, missing))}; "
                f"the model needs the columns {', '.join(map(repr, columns))}"
            )
        return [{name: row[name] for name in columns} for row in reader]


def _plain_predictions(predictions: np.ndarray) -> list[Any]:
    """Turn predictions into Python values: labels as they are, floats as short decimals.

    ``str`` of a NumPy float is the shortest text that reads back as the same value
    in its own dtype, so float32 outputs print as ``0.1`` instead of ``0.10000000149011612``.
    """
    if predictions.dtype == object:
        return [_plain(label) for label in predictions]
    return [
        [float(str(value)) for value in row] if row.ndim else float(str(row)) for row in predictions
    ]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# Output ---------------------------------------------------------------------


def _fail(error: _InputError, json_output: bool) -> NoReturn:
    """Print the error (as JSON with ``--json``) and exit with EXIT_INVALID_INPUT."""
    if json_output:
        _print_json({"error": {"message": error.message, "details": error.details}})
    else:
        stderr_console.print(_error_text(error.message), soft_wrap=True)
        for line in error.details:
            stderr_console.print(Text(f"  {line}"), soft_wrap=True)
    raise typer.Exit(EXIT_INVALID_INPUT)


def _error_text(message: str) -> Text:
    # A Text object, because messages contain brackets that rich would read as markup.
    return Text.assemble(("error: ", "red"), message)


def _print_json(content: Any) -> None:
    """Print strict JSON on one line; NaN and infinity become null."""
    console.out(json.dumps(_finite(content), allow_nan=False), highlight=False)


def _finite(content: Any) -> Any:
    if isinstance(content, float) and not math.isfinite(content):
        return None
    if isinstance(content, dict):
        return {key: _finite(value) for key, value in content.items()}
    if isinstance(content, list):
        return [_finite(value) for value in content]
    return content
