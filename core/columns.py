"""Columns of a table as they are read: numbers, text categories, or target values.

``core.tabular`` feeds each column its cells in blocks of rows. NumPy parses a
block of number cells in one call into a float64 array. Reading a large file so
takes about 8 bytes per cell, close to the final array, instead of a Python object
per cell. Cells that NumPy cannot parse (text, missing values, a mistake to
report) go through a slower path, one cell at a time.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.encoding import Column, Encoding

__all__ = ["MISSING_CELLS", "FeatureColumn", "Limits", "TargetColumn", "assemble_x"]

# Cells that mean "no value": empty, and what NumPy and pandas write for NaN.
MISSING_CELLS = frozenset({"", "nan", "NaN", "NAN"})
# A number written with a decimal comma or thousands separators, such as 1,5 or 1,000.
_COMMA_NUMBER = re.compile(r"[+-]?\d+(,\d+)+(\.\d*)?")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Limits:
    """Bounds on what a file may contain, checked while it is read.

    Attributes:
        max_columns: columns in a CSV header or in x.
        max_name_chars: characters in one column name.
        max_categories: different values in one text feature column.
        max_classes: different labels in a text target column.
        max_values: n_samples * n_features of the encoded x, or None for no bound.
            The float64 x then takes at most 8 * max_values bytes.
    """

    max_columns: int = 10_000
    max_name_chars: int = 1_000
    max_categories: int = 1_000
    max_classes: int = 1_000
    max_values: int | None = None


class FeatureColumn:
    """One feature column: numbers, or text stored as category codes in first-seen order."""

    def __init__(self, name: str, text_allowed: bool, limits: Limits) -> None:
        self.name = name
        self.text_allowed = text_allowed
        self.max_categories = limits.max_categories
        self.kind: Literal["number", "text"] | None = None
        self.first_text: tuple[str, str] | None = None  # (value, where it was read)
        self.categories: dict[str, int] = {}
        self._blocks: list[np.ndarray] = []
        self._pending = array("d")  # values added one at a time, NaN for missing

    def __len__(self) -> int:
        return sum(len(block) for block in self._blocks) + len(self._pending)

    # Adding values ----------------------------------------------------------------

    def add_cells(self, cells: Sequence[str], lines: Sequence[int]) -> None:
        """Add a block of CSV cells read at ``lines``."""
        if self.kind != "text":
            block = _parse_numbers(cells)
            if block is not None:
                if self.kind is None and not np.isnan(block).all():
                    self.kind = "number"
                self._flush_pending()
                self._blocks.append(block)
                return
        for cell, line in zip(cells, lines, strict=True):
            self.add_cell(cell.strip(), line)

    def add_cell(self, cell: str, line: int) -> None:
        """Add one stripped CSV cell: missing, a number, or text."""
        if cell in MISSING_CELLS:
            self._pending.append(math.nan)
            return
        try:
            number = float(cell)
        except ValueError:
            self.add_text(cell, f"line {line}, column {self.name!r}")
            return
        self.add_number(number, cell, f"line {line}, column {self.name!r}")

    def add_missing(self) -> None:
        self._pending.append(math.nan)

    def add_number(self, number: float, raw: object, where: str, *, missing: str = "empty") -> None:
        """Add a number; ``raw`` is the value as the file wrote it, ``where`` its location,
        and ``missing`` how the file's format writes a missing value."""
        if math.isnan(number):
            self._pending.append(math.nan)
            return
        if math.isinf(number):
            raise ValueError(
                f"{where}: {raw!r} is infinite; values must be finite numbers, "
                f"or {missing} for a missing value"
            )
        if self.kind == "text":
            assert self.first_text is not None
            text, text_where = self.first_text
            raise ValueError(
                f"{where}: {raw!r} is a number, but the column's earlier values are text "
                f"({text!r} at {text_where}); a column must contain only numbers or only text"
            )
        self.kind = "number"
        self._pending.append(number)

    def add_text(self, text: str, where: str) -> None:
        if self.kind == "number":
            _check_not_formatted_number(text, where)
            raise ValueError(
                f"{where}: {text!r} is not a number, but the column's other values are "
                "numbers; a column must contain only numbers or only text"
            )
        code = self.categories.get(text)
        if code is None:
            code = self._new_category(text, where)
        if self.kind is None:
            self.kind = "text"
            self.first_text = (text, where)
        self._pending.append(code)

    def _new_category(self, text: str, where: str) -> int:
        _check_not_formatted_number(text, where)
        if len(self.categories) >= self.max_categories:
            raise ValueError(
                f"column {self.name!r} has more than {self.max_categories:,} different text "
                "values; a column like that (an identifier or free text) cannot be one-hot "
                "encoded, so remove it or group its values"
            )
        self.categories[text] = len(self.categories)
        return self.categories[text]

    def _flush_pending(self) -> None:
        if self._pending:
            self._blocks.append(np.frombuffer(self._pending, dtype=np.float64).copy())
            self._pending = array("d")

    # Finishing --------------------------------------------------------------------

    def check_text_allowed(self) -> None:
        if self.kind == "text" and not self.text_allowed:
            assert self.first_text is not None
            text, where = self.first_text
            raise ValueError(
                f"column {self.name!r} contains text ({text!r} at {where}); text "
                "features are not supported yet, so encode the column as numbers or remove it"
            )

    def column(self) -> Column:
        if self.kind != "text":
            return Column(self.name)
        return Column(self.name, tuple(sorted(self.categories)))

    def fill(self, out: np.ndarray) -> None:
        """Write the encoded column into ``out`` of shape (n_samples, width), freeing the blocks."""
        self._flush_pending()
        position = self._sorted_positions()
        start = 0
        while self._blocks:
            block = self._blocks.pop(0)
            rows = out[start : start + len(block)]
            if position is None:
                rows[:, 0] = block
            else:
                _one_hot(block, position, rows)
            start += len(block)

    def _sorted_positions(self) -> np.ndarray | None:
        """Map each category code (first-seen order) to its one-hot column (sorted order)."""
        if self.kind != "text":
            return None
        position = np.empty(len(self.categories), dtype=np.int64)
        for index, category in enumerate(sorted(self.categories)):
            position[self.categories[category]] = index
        return position


def _check_not_formatted_number(text: str, where: str) -> None:
    if _COMMA_NUMBER.fullmatch(text):
        raise ValueError(
            f"{where}: {text!r} is not a number; write numbers without thousands "
            "separators and with a point as the decimal mark (1.5, not 1,5)"
        )


def _parse_numbers(cells: Sequence[str]) -> np.ndarray | None:
    """Parse a block of cells as float64 with NaN for missing; None unless all are finite
    numbers or missing."""
    if "" in cells:
        cells = [cell or "nan" for cell in cells]
    try:
        block = np.array(cells, dtype=np.float64)
    except ValueError:
        return None
    if np.isinf(block).any():
        return None  # the cell-by-cell path names the infinite value
    return block


def _one_hot(codes: np.ndarray, position: np.ndarray, out: np.ndarray) -> None:
    """Write codes (n,), NaN for missing, as one-hot rows into out (n, n_categories)."""
    present = ~np.isnan(codes)
    out[:] = 0.0
    out[~present] = np.nan
    out[np.flatnonzero(present), position[codes[present].astype(np.int64)]] = 1.0


class TargetColumn:
    """One target column: numbers while every cell parses, else text labels."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.max_classes = limits.max_classes
        self.numbers = array("d")
        self.codes: array[int] | None = array("q")
        self.labels: dict[str, int] | None = {}
        self.all_integers = True
        self.has_text = False

    def add_cells(self, cells: Sequence[str], lines: Sequence[int]) -> None:
        for cell, line in zip(cells, lines, strict=True):
            self.add_cell(cell.strip(), line)

    def add_cell(self, cell: str, line: int) -> None:
        if cell in MISSING_CELLS:
            raise ValueError(f"line {line}: target column {self.name!r} has no value")
        try:
            number = float(cell)
        except ValueError:
            self.has_text = True
            if self.labels is None:
                self._raise_too_many_classes()
            self.numbers.append(math.nan)
        else:
            if math.isnan(number):
                raise ValueError(f"line {line}: target column {self.name!r} has no value")
            if math.isinf(number):
                raise ValueError(
                    f"line {line}, target column {self.name!r}: {cell!r} is infinite; "
                    "targets must be finite"
                )
            if self.all_integers and not _INTEGER.fullmatch(cell):
                self.all_integers = False
            self.numbers.append(number)
        self._add_label(cell)

    def _add_label(self, cell: str) -> None:
        if self.labels is None or self.codes is None:
            return
        code = self.labels.get(cell)
        if code is None:
            if len(self.labels) >= self.max_classes:
                # Many different numbers are fine (regression); many text labels are not.
                if self.has_text:
                    self._raise_too_many_classes()
                self.labels = self.codes = None
                return
            code = self.labels[cell] = len(self.labels)
        self.codes.append(code)

    def _raise_too_many_classes(self) -> None:
        raise ValueError(
            f"target column {self.name!r} contains text and more than {self.max_classes:,} "
            "different labels; choose a column of class labels or of numbers as the target"
        )

    def values(self) -> np.ndarray:
        """Return int64 or float64 numbers, or str labels when any cell is text."""
        if self.has_text:
            assert self.labels is not None and self.codes is not None
            labels = np.array(list(self.labels), dtype=str)
            return labels[np.frombuffer(self.codes, dtype=np.int64)]
        numbers = np.frombuffer(self.numbers, dtype=np.float64).copy()
        if self.all_integers and len(numbers) and np.abs(numbers).max() < 2**53:
            return numbers.astype(np.int64)
        return numbers


def assemble_x(
    features: Sequence[FeatureColumn], encoding: Encoding, n_samples: int, limits: Limits
) -> np.ndarray:
    """Build x of shape (n_samples, encoding.n_features) from the columns, freeing them.

    Raises:
        ValueError: x would hold more than ``limits.max_values`` values.
    """
    check_size(n_samples, encoding, limits)
    x = np.empty((n_samples, encoding.n_features), dtype=np.float64)
    start = 0
    for values, column in zip(features, encoding.columns, strict=True):
        values.fill(x[:, start : start + column.width])
        start += column.width
    return x


def check_size(n_samples: int, encoding: Encoding, limits: Limits) -> None:
    """Raise ValueError when the encoded x would hold more than ``limits.max_values`` values."""
    if limits.max_values is None or n_samples * encoding.n_features <= limits.max_values:
        return
    widest = sorted(encoding.columns, key=lambda column: -column.width)[:3]
    wide_text = [f"{column.name!r} ({column.width})" for column in widest if column.is_text]
    hint = ""
    if wide_text:
        hint = "; the text columns with the most categories are " + ", ".join(wide_text)
    raise ValueError(
        f"the encoded features would hold {n_samples:,} rows x {encoding.n_features:,} "
        f"columns = {n_samples * encoding.n_features:,} values, above the limit of "
        f"{limits.max_values:,}{hint}"
    )
