"""Read a user's data file (CSV, NPZ or JSON) into feature and target arrays.

Formats:

- CSV: UTF-8 (a byte order mark is skipped), with a header row. The delimiter is
  whichever of ``,``, ``;``, tab and ``|`` appears most often in the header row
  outside quotes, and a comma when none does. Quoted fields may contain the
  delimiter. An empty cell or ``NaN`` is a missing value. Feature columns hold
  numbers; with ``text_features=True`` a column of text is one-hot encoded (see
  ``core.encoding``). A column that mixes numbers and text is an error. A target
  column of integers gives int64 targets (class labels), one of other numbers
  float64 targets (regression), and one with any text gives string labels.
- NPZ: arrays ``x`` (n_samples, n_features) and ``y`` (n_samples,) or
  (n_samples, n_outputs), and optionally ``feature_names`` and ``target_names``
  as string arrays. Read with ``allow_pickle=False``, so an array of objects is
  rejected and never unpickled.
- JSON: ``{"x": [[...], ...], "y": [...]}`` with the same optional name lists;
  ``null`` in x is a missing value, and with ``text_features=True`` a column of
  strings is one-hot encoded.

Infinite values are rejected in every format. Every error for bad content is a
ValueError that names the line or row and the column.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import zipfile
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from core.columns import FeatureColumn, Limits, TargetColumn, assemble_x, check_size
from core.encoding import Encoding

__all__ = ["Limits", "Table", "read_csv_header", "read_features", "read_table"]

Format = Literal["csv", "npz", "json"]
Source = str | os.PathLike[str] | bytes | IO[bytes]
_SUFFIX_FORMATS: dict[str, Format] = {".csv": "csv", ".npz": "npz", ".json": "json"}

_DELIMITERS = (",", ";", "\t", "|")
# Rows are handed to the columns in blocks of this many, so NumPy parses numbers in bulk.
_BLOCK_ROWS = 4096


@dataclass(frozen=True, eq=False)
class Table:
    """Features and targets read from one file.

    Attributes:
        x: ndarray of shape (n_samples, n_features), float64, NaN where a value is missing.
        y: ndarray of shape (n_samples,), or (n_samples, n_outputs) for several
            regression targets. int64 or float64 for numbers, str for text labels.
        feature_names: one name per column of x.
        target_names: one name per target column.
        encoding: the input columns that x encodes, or None when not recorded.
        lines: for a CSV, the line number of each row, shape (n_samples,); else None.
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_names: list[str]
    encoding: Encoding | None = None
    lines: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])


def read_table(
    source: Source,
    *,
    fmt: Format | None = None,
    target: str | Sequence[str] | None = None,
    text_features: bool = False,
    limits: Limits | None = None,
) -> Table:
    """Read features and targets from a CSV, NPZ or JSON file, its bytes, or a binary stream.

    Args:
        source: a file path, the file's content as bytes, or a seekable binary file
            object (read from its current position to the end).
        fmt: the format; None picks it from the file suffix, else from the content.
        target: CSV only. The target column's name, several names as a list or as
            one comma-separated string, or None for the last column.
        text_features: one-hot encode feature columns that contain text (CSV and
            JSON); when False such a column is an error.
        limits: bounds on columns, categories and size; default ``Limits()``.

    Raises:
        ValueError: the content is malformed; the message names the line or row and column.
        OSError: the file cannot be read.
    """
    limits = limits or Limits()
    with _open_source(source, fmt) as (stream, fmt):
        if fmt == "csv":
            return _table_from_csv(stream, target, text_features, limits)
        if target is not None:
            raise ValueError(f"target selects a CSV column, so it cannot be used with {fmt} data")
        if fmt == "npz":
            return _table_from_npz(_read_npz(stream), limits)
        return _table_from_json(_read_json(stream), text_features, limits)


def read_features(
    source: Source,
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
    with _open_source(source, fmt) as (stream, fmt):
        if fmt == "csv":
            return _features_from_csv(stream, feature_names)
        arrays = _read_npz(stream) if fmt == "npz" else _read_json(stream)
    x = _checked_x(arrays["x"], Limits()) if fmt == "npz" else _json_features(arrays["x"])
    if feature_names is not None and x.shape[1] != len(feature_names):
        raise ValueError(
            f"x has {x.shape[1]} columns but the model needs {len(feature_names)} features"
        )
    return x


def read_csv_header(source: Source, target: str | Sequence[str] | None = None) -> list[str]:
    """Return the target column names that ``target`` selects in a CSV's header.

    Only the header row is read, so this is cheap for a large file.

    Raises:
        ValueError: the CSV has no header or the target is not in it.
    """
    with _open_source(source, "csv") as (stream, _), _csv_rows(stream) as rows:
        for cells in rows:
            return _target_columns(_checked_header(cells, Limits()), target)
    raise ValueError("the CSV is empty; it needs a header row and at least one data row")


# Sources and formats --------------------------------------------------------


@contextmanager
def _open_source(source: Source, fmt: Format | None) -> Iterator[tuple[IO[bytes], Format]]:
    """Yield a seekable binary stream of ``source`` and its format."""
    if fmt is not None and fmt not in ("csv", "npz", "json"):
        raise ValueError(f"fmt must be 'csv', 'npz', 'json' or None, got {fmt!r}")
    if isinstance(source, bytes):
        stream: IO[bytes] = io.BytesIO(source)
        yield stream, fmt or _sniff_format(stream)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        with path.open("rb") as file:
            yield file, fmt or _SUFFIX_FORMATS.get(path.suffix.lower()) or _sniff_format(file)
    else:
        yield source, fmt or _sniff_format(source)


def _sniff_format(stream: IO[bytes]) -> Format:
    start = stream.tell()
    head = stream.read(512)
    stream.seek(start)
    if head.startswith(b"PK"):
        return "npz"
    if head.lstrip().startswith(b"{"):
        return "json"
    return "csv"


# CSV: rows --------------------------------------------------------------------


@contextmanager
def _csv_rows(stream: IO[bytes]) -> Iterator[_CsvRows]:
    """Yield the CSV's non-blank rows as lists of cells, with their line numbers.

    The stream is decoded as UTF-8 while it is read, so a large file is never held
    in memory as one string.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield _CsvRows(text)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"the CSV is not UTF-8 text: {error.reason} "
            f"(byte {error.object[error.start : error.end]!r}); save the file as UTF-8"
        ) from error
    finally:
        text.detach()  # the caller owns the stream; closing the wrapper would close it


class _CsvRows:
    """Iterates a CSV's non-blank rows; ``line`` is the last row's line number."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self.line = 0
        self._reader = self._reader_for(text)

    @staticmethod
    def _reader_for(text: io.TextIOWrapper) -> Any:
        skipped = []
        first = text.readline()
        while first and not first.strip():
            skipped.append(first)
            first = text.readline()
        delimiter = _detect_delimiter(first)
        return csv.reader(itertools.chain(skipped, [first], text), delimiter=delimiter)

    def __iter__(self) -> Iterator[list[str]]:
        reader = self._reader
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # a blank line
                self.line = reader.line_num
                yield row
        except csv.Error as error:
            line = reader.line_num
            if "field larger than field limit" in str(error):
                raise ValueError(
                    f"line {line} has a value longer than {csv.field_size_limit():,} "
                    "characters, the limit for one CSV field"
                ) from error
            raise ValueError(f"the CSV is malformed at line {line}: {error}") from error


def _detect_delimiter(header: str) -> str:
    unquoted = re.sub(r'"[^"]*"', "", header)
    counts = {delimiter: unquoted.count(delimiter) for delimiter in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] > 0 else ","


def _checked_header(cells: list[str], limits: Limits) -> list[str]:
    names = [cell.strip() for cell in cells]
    if len(names) > limits.max_columns:
        raise ValueError(
            f"the CSV header has {len(names):,} columns, above the limit of "
            f"{limits.max_columns:,}; remove columns or upload the data as NPZ"
        )
    seen: set[str] = set()
    for index, name in enumerate(names):
        if not name:
            raise ValueError(f"column {index + 1} of the CSV header has no name")
        if len(name) > limits.max_name_chars:
            raise ValueError(
                f"column {index + 1} of the CSV header has a name of {len(name):,} characters, "
                f"above the limit of {limits.max_name_chars:,}"
            )
        if name in seen:
            raise ValueError(f"column name {name!r} appears twice in the CSV header")
        seen.add(name)
    return names


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
                f"the columns are {', '.join(map(repr, header[:50]))}"
                + (f" and {len(header) - 50} more" if len(header) > 50 else "")
            )
    if len(set(names)) != len(names):
        raise ValueError(f"target names a column twice: {names}")
    return names


# CSV: columns -----------------------------------------------------------------


def _table_from_csv(
    stream: IO[bytes], target: str | Sequence[str] | None, text_features: bool, limits: Limits
) -> Table:
    with _csv_rows(stream) as rows:
        features, targets, lines = _read_csv_columns(rows, target, text_features, limits)
    for feature in features:
        feature.check_text_allowed()
    if len(targets) == 1:
        y = targets[0].values()
    else:
        for target_values in targets:
            if target_values.has_text:
                raise ValueError(
                    f"target column {target_values.name!r} contains text, but several target "
                    "columns must all be numeric (regression); use one text column for class "
                    "labels"
                )
        y = np.stack([values.values().astype(np.float64) for values in targets], axis=1)
    encoding = Encoding(tuple(column.column() for column in features))
    x = assemble_x(features, encoding, len(lines), limits)
    return Table(
        x=x,
        y=y,
        feature_names=encoding.feature_names,
        target_names=[column.name for column in targets],
        encoding=encoding,
        lines=np.frombuffer(lines, dtype=np.int64).copy(),
    )


def _read_csv_columns(
    rows: _CsvRows, target: str | Sequence[str] | None, text_features: bool, limits: Limits
) -> tuple[list[FeatureColumn], list[TargetColumn], array[int]]:
    """Read every row into per-column values; return the features, targets and line numbers."""
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        raise ValueError("the CSV is empty; it needs a header row and at least one data row")
    header = _checked_header(first, limits)
    target_names = _target_columns(header, target)
    if len(target_names) == len(header):
        raise ValueError("every column is a target; the CSV needs at least one feature column")
    columns = [
        TargetColumn(name, limits)
        if name in target_names
        else FeatureColumn(name, text_features, limits)
        for name in header
    ]
    lines = _read_blocks(rows, iterator, len(header), columns)
    features = [column for column in columns if isinstance(column, FeatureColumn)]
    by_name = {column.name: column for column in columns if isinstance(column, TargetColumn)}
    return features, [by_name[name] for name in target_names], lines


def _read_blocks(
    rows: _CsvRows,
    iterator: Iterator[list[str]],
    n_columns: int,
    columns: Sequence[FeatureColumn | TargetColumn | None],
) -> array[int]:
    """Hand the data rows to ``columns`` (None skips a column) in blocks; return line numbers."""
    lines = array("q")
    block: list[list[str]] = []
    for cells in iterator:
        if len(cells) != n_columns:
            raise ValueError(
                f"line {rows.line} has {len(cells)} values, but the header has {n_columns} columns"
            )
        block.append(cells)
        lines.append(rows.line)
        if len(block) == _BLOCK_ROWS:
            _add_block(columns, block, lines[-len(block) :])
            block = []
    if block:
        _add_block(columns, block, lines[-len(block) :])
    if not lines:
        raise ValueError("the CSV has a header but no data rows")
    return lines


def _add_block(
    columns: Sequence[FeatureColumn | TargetColumn | None],
    block: list[list[str]],
    lines: Sequence[int],
) -> None:
    # rows x columns -> columns x rows
    for column, cells in zip(columns, zip(*block, strict=True), strict=True):
        if column is not None:
            column.add_cells(cells, lines)


def _features_from_csv(stream: IO[bytes], feature_names: Sequence[str] | None) -> np.ndarray:
    limits = Limits()
    with _csv_rows(stream) as rows:
        iterator = iter(rows)
        first = next(iterator, None)
        if first is None:
            raise ValueError("the CSV is empty; it needs a header row and at least one data row")
        header = _checked_header(first, limits)
        names = list(feature_names) if feature_names is not None else header
        missing = [name for name in names if name not in header]
        if missing:
            raise ValueError(
                f"the CSV has no column {', '.join(map(repr, missing))}; "
                f"the model needs the columns {', '.join(map(repr, names))}"
            )
        by_name = {name: FeatureColumn(name, False, limits) for name in names}
        lines = _read_blocks(rows, iterator, len(header), [by_name.get(n) for n in header])
    columns = [by_name[name] for name in names]
    for column in columns:
        column.check_text_allowed()
    return assemble_x(columns, Encoding.numeric(names), len(lines), limits)


# NPZ and JSON ---------------------------------------------------------------


NPZ_MAGIC = b"PK"  # an NPZ file is a zip archive
NPY_MAGIC = b"\x93NUMPY"


def _read_npz(stream: IO[bytes]) -> dict[str, np.ndarray]:
    start = stream.read(len(NPY_MAGIC))
    stream.seek(0)
    if not start.startswith(NPZ_MAGIC) and start != NPY_MAGIC:
        # numpy treats any other file as a pickle, and its error about pickles misleads.
        raise ValueError(
            "the data is not an NPZ file (a zip archive of .npy arrays, as numpy.savez "
            "writes); save x and y with numpy.savez, or upload CSV or JSON"
        )
    try:
        loaded = np.load(stream, allow_pickle=False)
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
                except (OSError, EOFError, zipfile.BadZipFile) as error:
                    raise ValueError(f"array {name!r} is damaged: {error}") from error
    return arrays


def _table_from_npz(arrays: dict[str, np.ndarray], limits: Limits) -> Table:
    if "y" not in arrays:
        raise ValueError("the npz data has no 'y' (the targets)")
    x = _checked_x(arrays["x"], limits)
    y = _checked_y(arrays["y"], len(x))
    feature_names = _names(arrays, "feature_names", "x", x.shape[1])
    encoding = Encoding.numeric(feature_names)
    check_size(len(x), encoding, limits)
    return Table(
        x=x,
        y=y,
        feature_names=feature_names,
        target_names=_names(arrays, "target_names", "y", 1 if y.ndim == 1 else y.shape[1]),
        encoding=encoding,
    )


def _read_json(stream: IO[bytes]) -> dict[str, Any]:
    try:
        content = json.loads(stream.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the data is not valid JSON: {error}") from error
    if not isinstance(content, dict) or "x" not in content:
        raise ValueError(
            'the JSON data must be an object with "x" (and "y" for training), '
            f"got {type(content).__name__}"
            + (f" with the keys {sorted(content)[:10]}" if isinstance(content, dict) else "")
        )
    for key in ("feature_names", "target_names"):
        if key in content:
            names = content[key]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{key} must be a list of strings, got {names!r}")
    return content


def _table_from_json(content: dict[str, Any], text_features: bool, limits: Limits) -> Table:
    if "y" not in content:
        raise ValueError("the json data has no 'y' (the targets)")
    rows = content["x"]
    width = _json_width(rows, limits)
    given_names = content.get("feature_names")
    names = list(given_names) if given_names is not None else [f"x{j}" for j in range(width)]
    if len(names) != width:
        raise ValueError(f"feature_names must have {width} names, got {len(names)}")
    columns = [FeatureColumn(name, text_features, limits) for name in names]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise ValueError(f"x[{i}] must be a list of {width} values like x[0]")
        for j, (column, value) in enumerate(zip(columns, row, strict=True)):
            _add_json_value(column, value, i, j)
    encoding = Encoding(tuple(column.column() for column in columns))
    x = assemble_x(columns, encoding, len(rows), limits)
    y = _checked_y(_json_targets(content["y"]), len(x))
    target_names = [str(name) for name in content.get("target_names") or []]
    n_outputs = 1 if y.ndim == 1 else y.shape[1]
    if not target_names:
        target_names = ["y"] if n_outputs == 1 else [f"y{i}" for i in range(n_outputs)]
    if len(target_names) != n_outputs:
        raise ValueError(f"target_names must have {n_outputs} names, got {len(target_names)}")
    return Table(x, y, encoding.feature_names, target_names, encoding)


def _json_width(rows: Any, limits: Limits) -> int:
    if not isinstance(rows, list) or not rows:
        raise ValueError("x must be a non-empty list of rows")
    if not isinstance(rows[0], list) or not rows[0]:
        raise ValueError(
            f"x must be a list of rows, each a list of feature values (2-D), got x[0] = {rows[0]!r}"
        )
    if len(rows[0]) > limits.max_columns:
        raise ValueError(
            f"x has {len(rows[0]):,} columns, above the limit of {limits.max_columns:,}"
        )
    return len(rows[0])


def _add_json_value(column: FeatureColumn, value: Any, i: int, j: int) -> None:
    where = f"x[{i}][{j}]"
    if value is None or (isinstance(value, str) and not value.strip()):
        column.add_missing()
    elif isinstance(value, str) and column.text_allowed:
        column.add_text(value, where)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        column.add_number(float(value), value, where, missing="null")
    else:
        allowed = "numbers, text or null" if column.text_allowed else "numbers or null"
        raise ValueError(f"{where} is {value!r}; features must be {allowed}")


def _json_features(rows: Any) -> np.ndarray:
    """Read a JSON x of numbers and nulls, for prediction."""
    limits = Limits()
    width = _json_width(rows, limits)
    columns = [FeatureColumn(f"x{j}", False, limits) for j in range(width)]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise ValueError(f"x[{i}] must be a list of {width} values like x[0]")
        for j, (column, value) in enumerate(zip(columns, row, strict=True)):
            _add_json_value(column, value, i, j)
    encoding = Encoding.numeric([column.name for column in columns])
    return assemble_x(columns, encoding, len(rows), limits)


def _json_targets(values: Any) -> np.ndarray:
    if not isinstance(values, list):
        raise ValueError(f"y must be a list, got {type(values).__name__}")
    for i, value in enumerate(values):
        if value is None:
            raise ValueError(f"y[{i}] is null; every sample needs a target")
        if isinstance(value, list) and any(isinstance(item, list | dict) for item in value):
            raise ValueError(
                f"y[{i}] is {value!r}; y must be a list of targets, or of rows of numbers "
                "for several targets, with no deeper nesting"
            )
        if isinstance(value, dict):
            raise ValueError(f"y[{i}] is an object; targets must be numbers or strings")
    try:
        y = np.array(values)
    except ValueError as error:
        raise ValueError(
            f"y must be a flat list or a list of equal-length rows: {error}"
        ) from error
    if y.dtype.kind not in "biufU":
        raise ValueError(f"y must contain numbers or strings, got {values[:5]!r}...")
    return y


def _checked_x(x: np.ndarray, limits: Limits) -> np.ndarray:
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"x must have shape (n_samples, n_features), got {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(
            f"x must contain numbers, got dtype {x.dtype}; upload text features as CSV or JSON"
        )
    if len(x) == 0:
        raise ValueError("x has no samples")
    if x.shape[1] > limits.max_columns:
        raise ValueError(f"x has {x.shape[1]:,} columns, above the limit of {limits.max_columns:,}")
    x = x.astype(np.float64)
    infinite = np.isinf(x)
    if infinite.any():
        row, column = np.argwhere(infinite)[0]
        raise ValueError(
            f"x[{row}][{column}] is {x[row, column]}; values must be finite numbers, "
            "or NaN for a missing value"
        )
    return x


def _checked_y(y: np.ndarray, n_samples: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # (n_samples, 1) -> (n_samples,)
    if y.ndim not in (1, 2) or len(y) != n_samples:
        raise ValueError(f"y must have {n_samples} rows like x, got shape {y.shape}")
    if y.dtype.kind not in "biufU":
        raise ValueError(f"y must contain numbers or strings, got dtype {y.dtype}")
    if y.ndim == 2 and y.dtype.kind == "U":
        raise ValueError("y with several columns must be numeric (regression)")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        index = np.argwhere(~np.isfinite(y))[0]
        raise ValueError(
            f"y[{']['.join(str(i) for i in index)}] is {y[tuple(index)]}; "
            "every sample needs a finite target"
        )
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
