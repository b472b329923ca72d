"""core.encoding: raw rows to features, its errors, and its place in parameter files."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

import core
from core.encoding import Column, Encoding, RowError
from core.paramfile import load_model, to_json_dict, to_npz_bytes

ENCODING = Encoding(
    (Column("age"), Column("city", ("Bergen", "Oslo", "Trondheim")), Column("spend"))
)


def test_lists_and_objects_encode_alike() -> None:
    """A list in column order and an object by name give the same one-hot row."""
    as_list = ENCODING.encode([[31, "Oslo", 12.5]])
    as_object = ENCODING.encode([{"spend": 12.5, "city": "Oslo", "age": 31}])

    np.testing.assert_array_equal(as_list, [[31.0, 0.0, 1.0, 0.0, 12.5]])
    np.testing.assert_array_equal(as_object, as_list)
    assert ENCODING.feature_names == [
        "age",
        "city=Bergen",
        "city=Oslo",
        "city=Trondheim",
        "spend",
    ]


def test_missing_values_become_nan() -> None:
    """None, NaN and "" are missing: NaN in the number's feature and in every one-hot feature."""
    x = ENCODING.encode([[None, "", math.nan], ["40", None, "7"]])

    assert np.isnan(x[0]).all()
    assert x[1, 0] == 40.0
    assert np.isnan(x[1, 1:4]).all()
    assert x[1, 4] == 7.0


def test_unknown_category_lists_known_ones() -> None:
    """An unseen category names the row, the column, the value and the known categories."""
    with pytest.raises(RowError) as caught:
        ENCODING.encode([[1, "Oslo", 2], {"age": 1, "city": "Paris", "spend": 2}], name="inputs")

    error = caught.value
    assert (error.row, error.field) == (1, "city")
    assert "inputs[1].city is 'Paris'" in error.message
    assert "'Bergen', 'Oslo', 'Trondheim'" in error.message


def test_long_category_lists_are_cut() -> None:
    """Messages list the first 20 categories and count the rest."""
    encoding = Encoding((Column("code", tuple(f"c{i:02d}" for i in range(25))),))

    with pytest.raises(RowError, match="'c19' and 5 more"):
        encoding.encode([["zz"]])


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ([1, 2, 3], 1, "is the number 2, but column 'city' contains text"),
        (["x", "Oslo", 3], 0, "'x', but column 'age' contains numbers"),
        ([True, "Oslo", 3], 0, "of type bool"),
        ([1, "Oslo", math.inf], 2, "values must be finite"),
        ([1, "Oslo", [3]], 2, "of type list"),
    ],
)
def test_bad_values_name_their_field(row: list[object], field: int, words: str) -> None:
    """A value of the wrong type, or infinite, is named by its row and position."""
    with pytest.raises(RowError) as caught:
        ENCODING.encode([row])

    assert (caught.value.row, caught.value.field) == (0, field)
    assert words in caught.value.message


def test_row_shape_errors() -> None:
    """Wrong lengths, missing keys and unknown keys each name the columns."""
    with pytest.raises(RowError, match=r"rows\[0\] has 2 values.*'age', 'city', 'spend'"):
        ENCODING.encode([[1, "Oslo"]])
    with pytest.raises(RowError, match="no value for the column 'spend'"):
        ENCODING.encode([{"age": 1, "city": "Oslo"}])
    with pytest.raises(RowError, match="unknown column 'zip'"):
        ENCODING.encode([{"age": 1, "city": "Oslo", "spend": 2, "zip": "0150"}])
    with pytest.raises(RowError, match="n_features=2"):
        Encoding.numeric(["a", "b"]).encode([[1.0]])


def test_dict_round_trip_and_validation() -> None:
    """to_dict reads back equal; from_dict rejects malformed entries with their index."""
    assert Encoding.from_dict(json.loads(json.dumps(ENCODING.to_dict()))) == ENCODING
    with pytest.raises(ValueError, match=r"columns\[0\].type"):
        Encoding.from_dict({"columns": [{"name": "a", "type": "date"}]})
    with pytest.raises(ValueError, match="twice"):
        Encoding.from_dict({"columns": [{"name": "a", "type": "text", "categories": ["x", "x"]}]})
    with pytest.raises(ValueError, match="unique"):
        Encoding((Column("a"), Column("a")))


def test_column_of_feature() -> None:
    """Each feature index maps back to the column it encodes."""
    names = [ENCODING.column_of_feature(index) for index in range(ENCODING.n_features)]

    assert names == ["age", "city", "city", "city", "spend"]


# Parameter files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_model() -> core.Model:
    """A model trained on one number column and one text column."""
    rng = np.random.default_rng(0)
    cities = rng.choice(["Bergen", "Oslo", "Trondheim"], size=60)
    rows = [[float(rng.normal()), str(city)] for city in cities]
    encoding = Encoding((Column("age"), Column("city", ("Bergen", "Oslo", "Trondheim"))))
    x = encoding.encode(rows)
    y = np.where(cities == "Oslo", "yes", "no")
    spec = {
        "dataset": "upload",
        "model": {"layers": [{"type": "dense", "units": 2}]},
        "optimizer": {"type": "adam", "lr": 0.1},
        "training": {"epochs": 30},
        "preprocessing": {"standardize": True},
    }
    model = core.fit(spec, x, y, feature_names=encoding.feature_names).model
    model.encoding = encoding
    return model


def test_parameter_files_keep_the_encoding(text_model: core.Model) -> None:
    """NPZ and JSON files carry the encoding, so a loaded model predicts from raw rows."""
    rows = [[0.3, "Oslo"], {"age": -1.0, "city": "Bergen"}]
    expected = text_model.predict(text_model.encode(rows)).tolist()

    from_npz = load_model(to_npz_bytes(text_model))
    from_json = load_model(json.loads(json.dumps(to_json_dict(text_model))))

    assert from_npz.encoding == text_model.encoding
    assert from_npz.predict(from_npz.encode(rows)).tolist() == expected
    assert from_json.predict(from_json.encode(rows)).tolist() == expected
    assert expected == ["yes", "no"]


def test_predict_takes_raw_rows(text_model: core.Model) -> None:
    """A model trained on text columns predicts from raw rows and from encoded rows alike."""
    rows = [[0.3, "Oslo"], {"age": -1.0, "city": "Bergen"}]

    from_raw = text_model.predict(rows).tolist()
    from_encoded = text_model.predict(text_model.encode(rows)).tolist()

    assert from_raw == from_encoded
    assert from_raw == ["yes", "no"]
    with pytest.raises(RowError, match="Paris"):
        text_model.predict([[0.3, "Paris"]])


def test_numeric_model_rejects_text_inputs() -> None:
    """A model without text columns rejects a text value with a sentence, not a bare error."""
    x = np.arange(20.0).reshape(10, 2)
    spec = {"dataset": "t", "model": {"layers": [{"type": "dense", "units": 1}]}}
    model = core.fit(spec, x, x.sum(axis=1), task="regression").model

    with pytest.raises(ValueError, match="trained without text columns"):
        model.predict([[1.0, "Oslo"]])


def test_parameter_file_without_encoding_loads(text_model: core.Model) -> None:
    """A file without ``encoding`` loads with encoding None and numeric input columns."""
    content = to_json_dict(text_model)
    del content["encoding"]

    model = load_model(content)

    assert model.encoding is None
    assert model.input_encoding.column_names == model.feature_names


def test_parameter_file_encoding_must_match_features(text_model: core.Model) -> None:
    """An encoding whose features differ from feature_names is rejected."""
    content = to_json_dict(text_model)
    content["encoding"]["columns"][1]["categories"] = ["Bergen", "Oslo"]

    with pytest.raises(ValueError, match="encoding does not match feature_names"):
        load_model(content)


def test_npz_meta_holds_encoding_as_json(text_model: core.Model) -> None:
    """The NPZ meta member stores the encoding as plain JSON, readable without pickle."""
    with np.load(io.BytesIO(to_npz_bytes(text_model)), allow_pickle=False) as archive:
        meta = json.loads(str(archive["meta"]))

    assert meta["encoding"] == text_model.encoding.to_dict()  # type: ignore[union-attr]
