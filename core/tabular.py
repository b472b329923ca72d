"""Read a user's data file (CSV, NPZ or JSON) into feature and target arrays.

Formats:

- CSV: UTF-8, comma-separated, with a header row. Feature columns must be numeric,
  and an empty cell is a missing value (NaN). A target column of integers gives
  int64 targets (class labels), one of other numbers gives float64 targets
  (regression), and one with any text gives string labels.
- NPZ: arrays ``x`` (n_samples, n_features) and ``y`` (n_samples,) or
  (n_samples, n_outputs), and optionally ``feature_names`` and ``target_names``
  as string arrays. Read with ``allow_pickle=False``.
- JSON: ``{"x": [[...], ...], "y": [...]}`` with the same optional name lists;
  ``null`` in x is a missing value.

Every error for bad content is a ValueError that names the line or row and the column.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["Table", "read_features", "read_table"]

Format = Literal["csv", "npz", "json"]
_SUFFIX_FORMATS: dict[str, Format] = {".csv": "csv", ".npz": "npz", ".json": "json"}


@dataclass(frozen=True, eq=False)
class Table:
    """Features and targets read from one file.

    Attributes:
        x: ndarray of shape (n_samples, n_features), float64, NaN where a value is missing.
        y: ndarray of shape (n_samples,), or (n_samples, n_outputs) for several
            regression targets. int64 or float64 for numbers, str for text labels.
        feature_names: one name per column of x.
        target_names: one name per target column.
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_names: list[str]

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])


def read_table(
    source: str | os.PathLike[str] | bytes,
    *,
    fmt: Format | None = None,
    target: str | Sequence[str] | None = None,
) -> Table:
    """Read features and targets from a CSV, NPZ or JSON file or its bytes.

    Args:
        source: a file path, or the file's content as bytes.
        fmt: the format; None picks it from the file suffix, else from the content.
        target: CSV only. The target column's name, several names as a list or as
            one comma-separated string, or None for the last column.

    Raises:
        ValueError: the content is malformed; the message names the line or row and column.
        OSError: the file cannot be read.
    """
    data, fmt = _read_source(source, fmt)
    if fmt == "csv":
        return _table_from_csv(data, target)
    if target is not None:
        raise ValueError(f"target selects a CSV column, so it cannot be used with {fmt} data")
    arrays = _read_npz(data) if fmt == "npz" else _read_json(data)
    if "y" not in arrays:
        raise ValueError(f"the {fmt} data has no 'y' (the targets)")
    x = _checked_x(arrays["x"])
    y = _checked_y(arrays["y"], len(x))
    n_outputs = 1 if y.ndim == 1 else y.shape[1]
    return Table(
        x=x,
        y=y,
        feature_names=_names(arrays, "feature_names", "x", x.shape[1]),
        target_names=_names(arrays, "target_names", "y", n_outputs),
    )


def read_features(
    source: str | os.PathLike[str] | bytes,
    *,
    fmt: Format | None = None,
    feature_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Read the features to predict from, as an array of shape (n_samples, n_features).

    A CSV may contain other columns, the target for example. Only the columns named in
    ``feature_names`` are read, in that order, and None reads every column. NPZ and
    JSON data need only ``x``, with one column per feature name.

    Raises:
        ValueError: the content is malformed or a feature is missing.
        OSError: the file cannot be read.
    """
    data, fmt = _read_source(source, fmt)
    if fmt == "csv":
        header, rows, lines = _parse_csv(data)
        names = list(feature_names) if feature_names is not None else header
        missing = [name for name in names if name not in header]
        if missing:
            raise ValueError(
                f"the CSV has no column {', '.join(map(repr, missing))}; "
                f"the model needs the columns {', '.join(map(repr, names))}"
            )
        return _numeric_columns(header, rows, lines, names)
    arrays = _read_npz(data) if fmt == "npz" else _read_json(data)
    x = _checked_x(arrays["x"])
    if feature_names is not None and x.shape[1] != len(feature_names):
        raise ValueError(
            f"x has {x.shape[1]} columns but the model needs {len(feature_names)} features"
        )
    return x


# Sources and formats --------------------------------------------------------


def _read_source(
    source: str | os.PathLike[str] | bytes, fmt: Format | None
) -> tuple[bytes, Format]:
    if fmt is not None and fmt not in ("csv", "npz", "json"):
        raise ValueError(f"fmt must be 'csv', 'npz', 'json' or None, got {fmt!r}")
    if isinstance(source, bytes):
        return source, fmt or _sniff_format(source)
    path = Path(source)
    data = path.read_bytes()
    return data, fmt or _SUFFIX_FORMATS.get(path.suffix.lower()) or _sniff_format(data)


def _sniff_format(data: bytes) -> Format:
    if data.startswith(b"PK"):
        return "npz"
    if data.lstrip().startswith(b"{"):
        return "json"
    return "csv"


# CSV ------------------------------------------------------------------------


def _parse_csv(data: bytes) -> tuple[list[str], list[list[str]], list[int]]:
    """Return the header, the data rows (cells stripped of spaces) and each row's line number."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"the CSV is not UTF-8 text: {error}") from error
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row:
                continue  # a blank line
            cells = [cell.strip() for cell in row]
            if header is None:
                header = _checked_header(cells)
            elif len(cells) != len(header):
                raise ValueError(
                    f"line {reader.line_num} has {len(cells)} values, "
                    f"but the header has {len(header)} columns"
                )
            else:
                rows.append(cells)
                lines.append(reader.line_num)
    except csv.Error as error:
        raise ValueError(f"the CSV is malformed at line {reader.line_num}: {error}") from error
    if header is None:
        raise ValueError("the CSV is empty; it needs a header row and at least one data row")
    if not rows:
        raise ValueError("the CSV has a header but no data rows")
    return header, rows, lines


def _checked_header(names: list[str]) -> list[str]:
    for index, name in enumerate(names):
        if not name:
            raise ValueError(f"column {index + 1} of the CSV header has no name")
        if name in names[:index]:
            raise ValueError(f"column name {name!r} appears twice in the CSV header")
    return names


def _table_from_csv(data: bytes, target: str | Sequence[str] | None) -> Table:
    header, rows, lines = _parse_csv(data)
    target_names = _target_columns(header, target)
    feature_names = [name for name in header if name not in target_names]
    if not feature_names:
        raise ValueError("every column is a target; the CSV needs at least one feature column")
    x = _numeric_columns(header, rows, lines, feature_names)
    if len(target_names) == 1:
        y = _target_values(target_names[0], _column(header, rows, target_names[0]), lines)
    else:
        for name in target_names:
            if not _is_numeric(header, rows, name):
                raise ValueError(
                    f"target column {name!r} contains text, but several target columns must all "
                    "be numeric (regression); use one text column for class labels"
                )
        y = _numeric_columns(header, rows, lines, target_names)
        missing = np.argwhere(np.isnan(y))
        if len(missing):
            row, column = missing[0]
            raise ValueError(
                f"line {lines[row]}: target column {target_names[column]!r} has no value"
            )
    return Table(x=x, y=y, feature_names=feature_names, target_names=target_names)


def _target_columns(header: list[str], target: str | Sequence[str] | None) -> list[str]:
    if target is None:
        return [header[-1]]
    if isinstance(target, str):
        names = [target] if target in header else [part.strip() for part in target.split(",")]
    else:
        names = list(target)
    for name in names:
        if name not in header:
            raise ValueError(
                f"target column {name!r} is not in the CSV header; "
                f"the columns are {', '.join(map(repr, header))}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"target names a column twice: {names}")
    return names


def _column(header: list[str], rows: list[list[str]], name: str) -> list[str]:
    index = header.index(name)
    return [row[index] for row in rows]


def _is_numeric(header: list[str], rows: list[list[str]], name: str) -> bool:
    return all(_parse_float(cell) is not None for cell in _column(header, rows, name) if cell)


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _numeric_columns(
    header: list[str], rows: list[list[str]], lines: list[int], names: Sequence[str]
) -> np.ndarray:
    """Parse the named columns into shape (n_rows, len(names)); an empty cell is NaN."""
    columns = []
    for name in names:
        cells = _column(header, rows, name)
        values = np.full(len(cells), np.nan)
        bad = []
        for row, cell in enumerate(cells):
            if cell:
                value = _parse_float(cell)
                if value is None:
                    bad.append(row)
                else:
                    values[row] = value
        if bad:
            _raise_not_numeric(name, cells, lines, bad)
        columns.append(values)
    return np.stack(columns, axis=1)  # n_columns x (n_rows,) -> (n_rows, n_columns)


def _raise_not_numeric(name: str, cells: list[str], lines: list[int], bad: list[int]) -> None:
    first = bad[0]
    if len(bad) == sum(1 for cell in cells if cell):
        raise ValueError(
            f"column {name!r} contains text ({cells[first]!r} at line {lines[first]}); text "
            "features are not supported yet, so encode the column as numbers or remove it"
        )
    raise ValueError(f"line {lines[first]}, column {name!r}: {cells[first]!r} is not a number")


def _target_values(name: str, cells: list[str], lines: list[int]) -> np.ndarray:
    """Integers become int64 labels, other numbers float64 values, anything else str labels."""
    if "" in cells:
        line = lines[cells.index("")]
        raise ValueError(f"line {line}: target column {name!r} has no value")
    try:
        return np.array([int(cell) for cell in cells], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        return np.array([float(cell) for cell in cells], dtype=np.float64)
    except ValueError:
        return np.array(cells, dtype=str)


# NPZ and JSON ---------------------------------------------------------------


def _read_npz(data: bytes) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"the data is not a readable NPZ file: {error}") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("the data is a single .npy array; save x and y together with numpy.savez")
    with loaded:
        if "x" not in loaded.files:
            raise ValueError(f"the NPZ file has no array 'x'; its arrays are {loaded.files}")
        arrays: dict[str, np.ndarray] = {}
        for name in ("x", "y", "feature_names", "target_names"):
            if name in loaded.files:
                try:
                    arrays[name] = loaded[name]
                except ValueError as error:
                    # Object arrays need pickle, which allow_pickle=False rejects.
                    raise ValueError(f"array {name!r} cannot be read: {error}") from error
    return arrays


def _read_json(data: bytes) -> dict[str, np.ndarray]:
    try:
        content = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the data is not valid JSON: {error}") from error
    if not isinstance(content, dict) or "x" not in content:
        raise ValueError('the JSON data must be an object with "x" (and "y" for training)')
    arrays = {"x": _json_features(content["x"])}
    if "y" in content:
        arrays["y"] = _json_targets(content["y"])
    for key in ("feature_names", "target_names"):
        if key in content:
            names = content[key]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{key} must be a list of strings, got {names!r}")
            arrays[key] = np.array(names, dtype=str)
    return arrays


def _json_features(rows: Any) -> np.ndarray:
    if not isinstance(rows, list) or not rows:
        raise ValueError("x must be a non-empty list of rows")
    width = len(rows[0]) if isinstance(rows[0], list) else -1
    x = np.full((len(rows), max(width, 0)), np.nan)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise ValueError(f"x[{i}] must be a list of {max(width, 0)} values like x[0]")
        for j, value in enumerate(row):
            if isinstance(value, int | float) and not isinstance(value, bool):
                x[i, j] = value
            elif value is not None:
                raise ValueError(f"x[{i}][{j}] is {value!r}; features must be numbers or null")
    return x


def _json_targets(values: Any) -> np.ndarray:
    if not isinstance(values, list):
        raise ValueError(f"y must be a list, got {type(values).__name__}")
    for i, value in enumerate(values):
        if value is None:
            raise ValueError(f"y[{i}] is null; every sample needs a target")
    try:
        y = np.array(values)
    except ValueError as error:
        raise ValueError(
            f"y must be a flat list or a list of equal-length rows: {error}"
        ) from error
    if y.dtype.kind not in "biufU":
        raise ValueError(f"y must contain numbers or strings, got {values[:5]!r}...")
    return y


def _checked_x(x: np.ndarray) -> np.ndarray:
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"x must have shape (n_samples, n_features), got {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"x must contain numbers, got dtype {x.dtype}")
    if len(x) == 0:
        raise ValueError("x has no samples")
    return x.astype(np.float64)


def _checked_y(y: np.ndarray, n_samples: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # (n_samples, 1) -> (n_samples,)
    if y.ndim not in (1, 2) or len(y) != n_samples:
        raise ValueError(f"y must have {n_samples} rows like x, got shape {y.shape}")
    if y.dtype.kind not in "biufU":
        raise ValueError(f"y must contain numbers or strings, got dtype {y.dtype}")
    if y.ndim == 2 and y.dtype.kind == "U":
        raise ValueError("y with several columns must be numeric (regression)")
    return y


def _names(arrays: dict[str, np.ndarray], key: str, prefix: str, count: int) -> list[str]:
    if key not in arrays:
        if prefix == "y" and count == 1:
            return ["y"]
        return [f"{prefix}{i}" for i in range(count)]
    names = [str(name) for name in np.atleast_1d(arrays[key])]
    if len(names) != count:
        raise ValueError(f"{key} must have {count} names, got {len(names)}")
    return names
