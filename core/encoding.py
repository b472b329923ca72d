"""How raw rows become feature arrays: number columns as they are, text columns one-hot.

An ``Encoding`` lists a dataset's input columns in their original order. A number
column becomes one feature. A text column with categories ``c_1 .. c_k`` becomes k
features named ``column=c_i``, holding 1 in the row's category and 0 elsewhere. A
missing value (None, NaN, or an empty string) becomes NaN in every feature of its
column, so imputation and the missing-value checks treat both kinds of column alike.

>>> encoding = Encoding((Column("age"), Column("city", ("Bergen", "Oslo"))))
>>> encoding.feature_names
['age', 'city=Bergen', 'city=Oslo']
>>> encoding.encode([[31, "Oslo"], {"age": 40, "city": "Bergen"}]).tolist()
[[31.0, 0.0, 1.0], [40.0, 1.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_LISTED_CATEGORIES", "Column", "Encoding", "RowError", "value_location"]

# Error messages list at most this many known categories, then say how many more exist.
MAX_LISTED_CATEGORIES = 20

_COLUMN_TYPES = ("number", "text")


class RowError(ValueError):
    """A raw row that cannot be encoded; ``row`` and ``field`` locate the bad value.

    ``field`` is the value's position in a list row, its key in an object row, or
    None when the row as a whole is wrong (a wrong length, or missing keys).
    """

    def __init__(self, message: str, row: int, field: int | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row
        self.field = field


@dataclass(frozen=True)
class Column:
    """One input column: a number, or text with the categories it was trained on.

    ``categories`` is None for a number column and a sorted tuple of at least one
    label for a text column.
    """

    name: str
    categories: tuple[str, ...] | None = None

    @property
    def is_text(self) -> bool:
        return self.categories is not None

    @property
    def width(self) -> int:
        """The number of features this column becomes."""
        return 1 if self.categories is None else len(self.categories)

    @property
    def feature_names(self) -> list[str]:
        if self.categories is None:
            return [self.name]
        return [f"{self.name}={category}" for category in self.categories]


@dataclass(frozen=True)
class Encoding:
    """The input columns of a dataset or model, in their original order."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("an encoding needs at least one column")
        names = [column.name for column in self.columns]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"column names must be unique, got {duplicates} more than once")
        for column in self.columns:
            if column.categories is not None and not column.categories:
                raise ValueError(f"text column {column.name!r} needs at least one category")

    @classmethod
    def numeric(cls, names: Sequence[str]) -> Encoding:
        """An encoding of number columns only, one feature per name."""
        return cls(tuple(Column(str(name)) for name in names))

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def feature_names(self) -> list[str]:
        return [name for column in self.columns for name in column.feature_names]

    @property
    def n_features(self) -> int:
        return sum(column.width for column in self.columns)

    @property
    def has_text(self) -> bool:
        return any(column.is_text for column in self.columns)

    def column_of_feature(self, feature: int) -> str:
        """Return the name of the column that feature index ``feature`` comes from."""
        start = 0
        for column in self.columns:
            start += column.width
            if feature < start:
                return column.name
        raise IndexError(f"feature index {feature} is out of range for {self.n_features} features")

    # Encoding rows ------------------------------------------------------------

    def encode(
        self, rows: Sequence[Sequence[Any] | Mapping[str, Any]], name: str = "rows"
    ) -> np.ndarray:
        """Encode raw rows into features of shape (n_samples, n_features), float64.

        Each row is a list of values in column order or an object keyed by column
        name. A number column takes an int, a float or a string that parses as a
        number; a text column takes one of its categories. None, NaN and "" are
        missing values and become NaN. ``name`` is how error messages refer to
        ``rows`` (``inputs[3].city``, say).

        Raises:
            RowError: a row has the wrong length or keys, or a value is infinite, of
                the wrong type, or an unknown category. The message names the row,
                the column and the value, and lists the known categories.
        """
        x = np.empty((len(rows), self.n_features), dtype=np.float64)
        for index, row in enumerate(rows):
            values = self._row_values(row, index, name)
            start = 0
            for position, (column, value) in enumerate(zip(self.columns, values, strict=True)):
                field: int | str = column.name if isinstance(row, Mapping) else position
                where = value_location(name, index, field)
                x[index, start : start + column.width] = _encode_value(
                    column, value, where, index, field
                )
                start += column.width
        return x

    def _row_values(self, row: Any, index: int, name: str) -> list[Any]:
        """Return the row's values in column order, checking its length or keys."""
        if isinstance(row, Mapping):
            return self._values_by_name(row, index, name)
        if isinstance(row, str | bytes) or not isinstance(row, Sequence):
            raise RowError(
                f"{name}[{index}] must be a list of values or an object keyed by column name, "
                f"got {type(row).__name__}",
                index,
            )
        if len(row) != len(self.columns):
            raise RowError(self._length_message(len(row), index, name), index)
        return list(row)

    def _length_message(self, length: int, index: int, name: str) -> str:
        if not self.has_text:
            return (
                f"{name}[{index}] has {length} values, but the model expects rows of "
                f"n_features={self.n_features} values"
            )
        return (
            f"{name}[{index}] has {length} values, but the model expects one value per input "
            f"column, {len(self.columns)} in all: {_quoted(self.column_names)}"
        )

    def _values_by_name(self, row: Mapping[str, Any], index: int, name: str) -> list[Any]:
        missing = [column for column in self.column_names if column not in row]
        if missing:
            raise RowError(
                f"{name}[{index}] has no value for the {_plural('column', missing)} "
                f"{_quoted(missing)}; every row "
                f"needs all {len(self.columns)} input columns, with null for a missing value",
                index,
            )
        known = set(self.column_names)
        unknown = [key for key in row if key not in known]
        if unknown:
            raise RowError(
                f"{name}[{index}] has the unknown {_plural('column', unknown)} "
                f"{_quoted(unknown)}; the model's input "
                f"columns are {_quoted(self.column_names)}",
                index,
                unknown[0],
            )
        return [row[column] for column in self.column_names]

    # Storage --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return the encoding as JSON-serializable data; ``from_dict`` reads it back."""
        return {
            "columns": [
                {"name": column.name, "type": "number"}
                if column.categories is None
                else {"name": column.name, "type": "text", "categories": list(column.categories)}
                for column in self.columns
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Encoding:
        """Read an encoding written by ``to_dict``.

        Raises:
            ValueError: the data is not an encoding; the message names the bad entry.
        """
        columns = data.get("columns") if isinstance(data, Mapping) else None
        if not isinstance(columns, list):
            raise ValueError("encoding.columns must be a list of columns")
        return cls(tuple(_read_column(index, entry) for index, entry in enumerate(columns)))


def _read_column(index: int, entry: Any) -> Column:
    where = f"encoding.columns[{index}]"
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise ValueError(f"{where} must be an object with a string 'name'")
    kind = entry.get("type")
    if kind not in _COLUMN_TYPES:
        raise ValueError(f"{where}.type must be one of {_COLUMN_TYPES}, got {kind!r}")
    if kind == "number":
        return Column(entry["name"])
    categories = entry.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ValueError(f"{where}.categories must be a list of strings")
    if len(set(categories)) != len(categories):
        raise ValueError(f"{where}.categories lists a category twice")
    return Column(entry["name"], tuple(categories))


def _encode_value(
    column: Column, value: Any, where: str, row: int, field: int | str
) -> float | np.ndarray:
    """Return the feature value (number column) or the one-hot vector (text column)."""
    if _is_missing(value):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowError(
            f"{where} is {value!r} of type {type(value).__name__}; values must be numbers, "
            "text or null",
            row,
            field,
        )
    if column.categories is None:
        return _number(column, value, where, row, field)
    if not isinstance(value, str):
        raise RowError(
            f"{where} is the number {value!r}, but column {column.name!r} contains text; "
            f"its categories are {_listed(column.categories)}",
            row,
            field,
        )
    try:
        position = column.categories.index(value)
    except ValueError:
        raise RowError(
            f"{where} is {value!r}, which is not a known category of column {column.name!r}; "
            f"the known categories are {_listed(column.categories)} (matched exactly, so "
            "check spelling and capitalization)",
            row,
            field,
        ) from None
    one_hot = np.zeros(column.width)
    one_hot[position] = 1.0
    return one_hot


def _number(column: Column, value: float | str, where: str, row: int, field: int | str) -> float:
    number: float
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise RowError(
                f"{where} is {value!r}, but column {column.name!r} contains numbers",
                row,
                field,
            ) from None
        if math.isnan(number):
            return math.nan
    else:
        number = float(value)
    if math.isinf(number):
        raise RowError(
            f"{where} is {value!r}; values must be finite numbers, or null for a missing value",
            row,
            field,
        )
    return number


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def value_location(name: str, index: int, field: int | str) -> str:
    """Format where a value sits, as the API writes error locations: ``inputs[0].city``
    in a row keyed by column name, ``inputs[0][2]`` in a row of values in column order."""
    return f"{name}[{index}]" + (f".{field}" if isinstance(field, str) else f"[{field}]")


def _plural(noun: str, items: Sequence[Any]) -> str:
    return noun if len(items) == 1 else noun + "s"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _listed(categories: Sequence[str]) -> str:
    shown = _quoted(categories[:MAX_LISTED_CATEGORIES])
    hidden = len(categories) - MAX_LISTED_CATEGORIES
    return shown if hidden <= 0 else f"{shown} and {hidden} more"
