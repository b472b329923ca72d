"""core.tabular: reading CSV, NPZ and JSON tables, with text columns and limits."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from core.tabular import Limits, read_csv_header, read_features, read_table


def _read(text: str | bytes, **options: object) -> object:
    content = text.encode() if isinstance(text, str) else text
    return read_table(content, **options)  # type: ignore[arg-type]


# CSV dialects --------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_detected_from_header(delimiter: str) -> None:
    """Each of , ; tab | is found from the header row."""
    text = delimiter.join(["a", "b", "y"]) + "\n" + delimiter.join(["1.5", "2", "0"]) + "\n"

    table = read_table(text.encode())

    assert table.feature_names == ["a", "b"]
    np.testing.assert_array_equal(table.x, [[1.5, 2.0]])


def test_bom_stripped_and_blank_lines_skipped() -> None:
    """A UTF-8 byte order mark is not part of the first name; blank lines are not rows."""
    table = read_table("\ufeff\n a , y \n\n1,0\n  \n2,1\n".encode())

    assert table.feature_names == ["a"]
    assert table.target_names == ["y"]
    assert table.lines is not None and table.lines.tolist() == [4, 6]


def test_quoted_fields_keep_delimiters_and_newlines() -> None:
    """Quoted text may contain the delimiter and line breaks."""
    text = 'n,place,y\n1,"Oslo, Norway",a\n2,"two\nlines",b\n3,"Oslo, Norway",a\n'

    table = read_table(text.encode(), text_features=True)

    assert table.encoding is not None
    assert table.encoding.columns[1].categories == ("Oslo, Norway", "two\nlines")
    assert table.lines is not None and table.lines.tolist() == [2, 4, 5]


# Columns --------------------------------------------------------------------------------


def test_text_columns_one_hot_in_sorted_order() -> None:
    """Categories are sorted; a missing text value is NaN in each of its features."""
    text = "size,color,y\n1,red,0\n2,blue,1\n3,,0\n4,red,1\n"

    table = read_table(text.encode(), text_features=True)

    assert table.feature_names == ["size", "color=blue", "color=red"]
    np.testing.assert_array_equal(table.x[[0, 1, 3]], [[1, 0, 1], [2, 1, 0], [4, 0, 1]])
    assert np.isnan(table.x[2, 1:]).all()


def test_text_rejected_without_text_features() -> None:
    """Without text_features a text column is an error that names it."""
    with pytest.raises(ValueError, match="column 'color' contains text"):
        read_table(b"a,color,y\n1,red,0\n2,blue,1\n")


@pytest.mark.parametrize("cell", ["", "NaN", "nan"])
def test_missing_number_is_nan(cell: str) -> None:
    """An empty cell or NaN is a missing value."""
    table = read_table(f"a,b,y\n1,{cell},0\n2,3,1\n".encode())

    assert np.isnan(table.x[0, 1])
    assert table.x[1, 1] == 3.0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a,y\n1,0\ninf,1\n", "line 3, column 'a': 'inf' is infinite"),
        ("a,y\n1,0\nx,1\n", "line 3, column 'a': 'x' is not a number"),
        ("a,y\nx,0\n1,1\n", "line 3, column 'a': '1' is a number"),
        ("a,y\n1,0\n1,000,1\n", "line 3 has 3 values"),
        ('a,y\n1,0\n"1,000",1\n', "thousands"),
        ("a,y\n1,0\n2,-Infinity\n", "line 3, target column 'y'"),
    ],
)
def test_bad_cells_named(text: str, words: str) -> None:
    """Infinite values, mixed columns and formatted numbers name the line and column."""
    with pytest.raises(ValueError, match=words):
        read_table(text.encode(), text_features=True)


def test_errors_after_first_block_name_their_line() -> None:
    """Rows past the first block of 4,096 are checked with their own line numbers."""
    rows = [f"{i},{i % 2}" for i in range(5000)]
    rows[4500] = "oops,1"

    with pytest.raises(ValueError, match="line 4502, column 'a': 'oops' is not a number"):
        read_table(("a,y\n" + "\n".join(rows) + "\n").encode())


def test_missing_values_across_blocks() -> None:
    """Missing cells in any block come back as NaN at their rows."""
    values = [str(i) for i in range(6000)]
    values[10] = ""
    values[5000] = "NaN"
    text = "a,y\n" + "".join(f"{value},{i % 2}\n" for i, value in enumerate(values))

    table = read_table(text.encode())

    assert np.flatnonzero(np.isnan(table.x[:, 0])).tolist() == [10, 5000]
    assert table.x[5999, 0] == 5999.0


@pytest.mark.parametrize(
    ("column", "dtype"),
    [(["1", "2", "3"], np.int64), (["1.5", "2", "3"], np.float64), (["a", "2", "3"], np.str_)],
)
def test_target_types(column: list[str], dtype: type) -> None:
    """Integer targets are int64, other numbers float64, and any text makes str labels."""
    text = "x,y\n" + "".join(f"{i},{value}\n" for i, value in enumerate(column))

    table = read_table(text.encode())

    assert table.y.dtype.type is dtype


def test_several_numeric_targets() -> None:
    """A comma-separated target selects several numeric columns as (n_samples, n_outputs)."""
    table = read_table(b"a,b,c\n1,2,3\n4,5,6\n", target="b,c")

    assert table.y.shape == (2, 2)
    assert table.feature_names == ["a"]


# Limits ---------------------------------------------------------------------------------


def test_limits_are_enforced() -> None:
    """Columns, categories, name length and encoded values each have a limit."""
    limits = Limits(max_columns=3, max_categories=2, max_name_chars=5, max_values=5)

    with pytest.raises(ValueError, match="4 columns, above the limit of 3"):
        read_table(b"a,b,c,y\n1,2,3,4\n", limits=limits)
    with pytest.raises(ValueError, match="more than 2 different text values"):
        read_table(b"c,y\nx,0\nz,1\nw,0\n", text_features=True, limits=limits)
    with pytest.raises(ValueError, match="name of 6 characters"):
        read_table(b"abcdef,y\n1,0\n", limits=limits)
    with pytest.raises(ValueError, match="3 rows x 2 columns = 6 values"):
        read_table(b"c,y\nx,0\nz,1\nx,0\n", text_features=True, limits=limits)


# Sources, NPZ and JSON ---------------------------------------------------------------------


def test_stream_and_path_sources(tmp_path: Path) -> None:
    """A binary stream is read from its position and left open; a path by its suffix."""
    stream = io.BytesIO(b"a,y\n1,0\n2,1\n")
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"x": [[1.0], [None]], "y": [0.5, 1.5]}))

    from_stream = read_table(stream, fmt="csv")
    from_path = read_table(path)

    assert not stream.closed
    assert from_stream.x.tolist() == [[1.0], [2.0]]
    assert np.isnan(from_path.x[1, 0])


def test_json_text_column() -> None:
    """JSON strings are categories with text_features; numbers stay numbers."""
    content = {"x": [[1, "red"], [2, "blue"]], "y": ["a", "b"], "feature_names": ["n", "c"]}

    table = read_table(json.dumps(content).encode(), text_features=True)

    assert table.feature_names == ["n", "c=blue", "c=red"]
    with pytest.raises(
        ValueError, match="x\\[0\\]\\[1\\] is 'red'; features must be numbers or null"
    ):
        read_table(json.dumps(content).encode())


def test_json_infinity_names_null() -> None:
    """An infinite JSON feature is rejected with JSON's own word for a missing value."""
    content = '{"x": [[1.0], [Infinity]], "y": [0, 1]}'

    with pytest.raises(ValueError, match=r"is infinite; .* or null for a missing value"):
        read_table(content.encode(), text_features=True)


def test_npz_objects_never_unpickled() -> None:
    """An NPZ holding an object array is rejected by allow_pickle=False."""
    buffer = io.BytesIO()
    np.savez(buffer, x=np.ones((2, 1)), y=np.array([{"a": 1}, None], dtype=object))

    with pytest.raises(ValueError, match="allow_pickle"):
        read_table(buffer.getvalue())


def test_read_csv_header_resolves_target() -> None:
    """Only the header is needed to resolve the target, by default the last column."""
    assert read_csv_header(b"a,b,c\n1,2,3\n") == ["c"]
    assert read_csv_header(b"a,b,c\n", "a, b") == ["a", "b"]
    with pytest.raises(ValueError, match="target column 'z' is not in the CSV header"):
        read_csv_header(b"a,b\n", "z")


def test_read_features_picks_named_columns() -> None:
    """read_features reads the named columns in order and ignores the others."""
    x = read_features(b"label,b,a\nx,2,1\ny,4,3\n", feature_names=["a", "b"])

    np.testing.assert_array_equal(x, [[1.0, 2.0], [3.0, 4.0]])
