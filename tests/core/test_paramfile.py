import io
import json

import numpy as np
import pytest

import core
from core.paramfile import (
    PARAMETERS_FORMAT,
    load_model,
    save_json,
    save_npz,
    to_json_dict,
    to_npz_bytes,
)

IRIS_SPEC = {
    "dataset": "builtin:iris",
    "model": {
        "layers": [
            {"type": "dense", "units": 8, "activation": "tanh"},
            {"type": "dropout", "rate": 0.1},
            {"type": "dense", "units": 3},
        ]
    },
    "optimizer": {"type": "adam", "lr": 0.01},
    "training": {"epochs": 5, "batch_size": 16, "validation_split": 0.2, "seed": 3},
    "preprocessing": {"standardize": True},
}

DIABETES_SPEC = {
    "dataset": "builtin:diabetes",
    "model": {
        "layers": [
            {"type": "dense", "units": 4, "activation": "relu"},
            {"type": "dense", "units": 1},
        ]
    },
    "training": {"epochs": 3, "dtype": "float64"},
    "preprocessing": {"standardize": True},
}


@pytest.fixture(scope="module")
def iris():
    return core.load_builtin("iris")


@pytest.fixture(scope="module")
def iris_model(iris):
    result = core.fit(
        IRIS_SPEC, iris.x, iris.y, classes=iris.classes, feature_names=iris.feature_names
    )
    return result.model


@pytest.fixture(scope="module")
def diabetes_model():
    diabetes = core.load_builtin("diabetes")
    return core.fit(DIABETES_SPEC, diabetes.x, diabetes.y).model


def _assert_same_predictions(loaded, original, x):
    assert loaded.network.dtype == original.network.dtype
    assert np.array_equal(loaded.predict_outputs(x), original.predict_outputs(x))
    assert np.array_equal(loaded.predict(x), original.predict(x))


def _members(model):
    """Every member of the model's NPZ file, for building damaged copies."""
    with np.load(io.BytesIO(to_npz_bytes(model)), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _npz(members):
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    return buffer.getvalue()


def _meta(members):
    return json.loads(str(members["meta"]))


def _with_meta(members, **changes):
    meta = {**_meta(members), **changes}
    return {**members, "meta": np.array(json.dumps(meta))}


# Round trips ------------------------------------------------------------------


def test_npz_file_round_trip(iris_model, iris, tmp_path):
    """A model saved with save_npz and loaded from the path predicts bit for bit the same."""
    path = tmp_path / "iris.npz"

    save_npz(iris_model, path)
    loaded = load_model(path)

    _assert_same_predictions(loaded, iris_model, iris.x)
    assert loaded.task == "classification"
    assert loaded.classes == ["setosa", "versicolor", "virginica"]
    assert loaded.feature_names == list(iris.feature_names)
    assert loaded.spec == iris_model.spec


def test_json_file_round_trip(iris_model, iris, tmp_path):
    """A model saved with save_json and loaded from the path predicts bit for bit the same."""
    path = tmp_path / "iris.json"

    save_json(iris_model, path)
    loaded = load_model(path)

    _assert_same_predictions(loaded, iris_model, iris.x)
    assert loaded.classes == iris_model.classes


def test_npz_bytes_round_trip(iris_model, iris):
    """load_model takes the bytes that to_npz_bytes returns."""
    loaded = load_model(to_npz_bytes(iris_model))

    _assert_same_predictions(loaded, iris_model, iris.x)


def test_json_dict_round_trip_exact(diabetes_model):
    """Parameters and preprocessing survive JSON text exactly, in float64 too."""
    x = core.load_builtin("diabetes").x
    text = json.dumps(to_json_dict(diabetes_model))

    loaded = load_model(json.loads(text))

    _assert_same_predictions(loaded, diabetes_model, x)
    for name, value in diabetes_model.parameters().items():
        assert np.array_equal(loaded.parameters()[name], value), name
    assert np.array_equal(loaded.preprocessor.mean, diabetes_model.preprocessor.mean)
    assert np.array_equal(loaded.preprocessor.scale, diabetes_model.preprocessor.scale)
    assert loaded.classes is None
    assert loaded.task == "regression"


def test_path_without_suffix_detects_format(iris_model, iris, tmp_path):
    """A file with another suffix is read as NPZ or JSON by its content."""
    npz_path, json_path = tmp_path / "model.bin", tmp_path / "model.txt"
    save_npz(iris_model, npz_path)
    save_json(iris_model, json_path)

    _assert_same_predictions(load_model(npz_path), iris_model, iris.x)
    _assert_same_predictions(load_model(json_path), iris_model, iris.x)


def test_integer_class_labels_round_trip(iris):
    """Labels learned from integer targets come back as the same ints."""
    y = np.array([10, 20, 30])[iris.y]
    spec = {**IRIS_SPEC, "training": {"epochs": 1}}
    model = core.fit(spec, iris.x, y).model

    from_json = load_model(json.loads(json.dumps(to_json_dict(model))))
    from_npz = load_model(to_npz_bytes(model))

    assert from_json.classes == [10, 20, 30]
    assert from_npz.classes == [10, 20, 30]
    assert np.array_equal(from_npz.predict(iris.x), model.predict(iris.x))


def test_binary_logit_model_round_trip():
    """A binary_cross_entropy model with one output unit and two classes loads and predicts."""
    data = core.load_builtin("breast_cancer")
    spec = {
        "dataset": "builtin:breast_cancer",
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "loss": "binary_cross_entropy",
        "training": {"epochs": 2},
        "preprocessing": {"standardize": True},
    }
    model = core.fit(spec, data.x, data.y, classes=data.classes).model

    loaded = load_model(to_npz_bytes(model))

    _assert_same_predictions(loaded, model, data.x)
    assert loaded.classes == ["malignant", "benign"]


# Open formats -------------------------------------------------------------------


def test_npz_file_loads_without_pickle(iris_model, tmp_path):
    """Every member of the NPZ loads with allow_pickle=False and has the documented name."""
    path = tmp_path / "iris.npz"
    save_npz(iris_model, path)

    with np.load(path, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}

    assert set(members) == {
        "dense_0.weight", "dense_0.bias", "dense_2.weight", "dense_2.bias",
        "preprocessing.mean", "preprocessing.scale", "meta",
    }  # fmt: skip
    assert members["dense_0.weight"].shape == (4, 8)
    assert members["dense_0.weight"].dtype == np.float32
    assert members["meta"].ndim == 0
    assert members["meta"].dtype.kind == "U"


def test_npz_meta_fields(iris_model):
    """The meta member is JSON with the format tag, spec, task, classes and shapes."""
    meta = _meta(_members(iris_model))

    assert meta["format"] == PARAMETERS_FORMAT
    assert meta["spec"] == iris_model.spec.model_dump(mode="json")
    assert meta["task"] == "classification"
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["n_features"] == 4
    assert meta["dtype"] == "float32"
    assert len(meta["feature_names"]) == 4


def test_json_dict_is_plain_json(iris_model):
    """to_json_dict returns only JSON types, with shapes next to the nested lists."""
    content = to_json_dict(iris_model)

    reloaded = json.loads(json.dumps(content, allow_nan=False))

    assert reloaded == content
    assert content["parameters"]["dense_0.weight"]["shape"] == [4, 8]
    assert len(content["parameters"]["dense_0.weight"]["data"]) == 4
    assert set(content["preprocessing"]) == {"mean", "scale"}


def test_to_json_dict_rejects_non_finite(iris_model, iris):
    """NaN cannot be written as JSON, so saving a model that contains NaN fails."""
    model = load_model(to_npz_bytes(iris_model))
    model.network.params[0] = np.nan

    with pytest.raises(ValueError, match=r"dense_0\.weight.*NaN"):
        to_json_dict(model)


# Malformed files ------------------------------------------------------------------


def test_load_rejects_wrong_format_tag(iris_model):
    """A meta with another format tag is rejected, naming the expected one."""
    members = _with_meta(_members(iris_model), format="steep.checkpoint/1")

    with pytest.raises(ValueError, match=r"steep\.parameters/1"):
        load_model(_npz(members))


def test_load_rejects_missing_meta(iris_model):
    """An NPZ without its meta member is rejected."""
    members = _members(iris_model)
    del members["meta"]

    with pytest.raises(ValueError, match="no 'meta' member"):
        load_model(_npz(members))


def test_load_rejects_missing_parameter(iris_model):
    """A missing parameter is rejected and the message lists the expected names."""
    members = _members(iris_model)
    del members["dense_2.bias"]

    with pytest.raises(ValueError, match=r"dense_2\.bias"):
        load_model(_npz(members))


def test_load_rejects_shape_mismatch(iris_model):
    """A parameter of the wrong shape is rejected, naming the parameter and both shapes."""
    members = _members(iris_model)
    members["dense_0.weight"] = np.zeros((4, 9), dtype=np.float32)

    with pytest.raises(ValueError, match=r"dense_0\.weight must have shape \(4, 8\)"):
        load_model(_npz(members))


def test_load_rejects_dtype_mismatch(iris_model):
    """A float64 parameter in a float32 file is rejected instead of rounded."""
    members = _members(iris_model)
    members["dense_0.bias"] = members["dense_0.bias"].astype(np.float64)

    with pytest.raises(ValueError, match="dtype float32"):
        load_model(_npz(members))


def test_load_rejects_invalid_spec(iris_model):
    """A spec that does not validate is rejected, naming the field."""
    members = _members(iris_model)
    spec = _meta(members)["spec"]
    spec["model"]["layers"][0]["units"] = 0

    with pytest.raises(ValueError, match=r"spec.*model\.layers\.0"):
        load_model(_npz(_with_meta(members, spec=spec)))


def test_load_rejects_class_count_mismatch(iris_model):
    """Classes that do not match the output units are rejected."""
    members = _with_meta(_members(iris_model), classes=["a", "b"])

    with pytest.raises(ValueError, match="3 outputs but the file lists 2 classes"):
        load_model(_npz(members))


def test_load_rejects_preprocessing_shape(iris_model):
    """Preprocessing arrays must have one value per feature."""
    members = _members(iris_model)
    members["preprocessing.mean"] = np.zeros(5)

    with pytest.raises(ValueError, match=r"preprocessing\.mean must have shape \(4,\)"):
        load_model(_npz(members))


def test_load_rejects_bytes_that_are_not_npz():
    """Arbitrary bytes are rejected with ValueError, not an unpickling attempt."""
    with pytest.raises(ValueError, match="not a readable NPZ"):
        load_model(b"definitely not an archive")


def test_load_rejects_non_json_file(tmp_path):
    """A .json file that does not contain JSON is rejected."""
    path = tmp_path / "model.json"
    path.write_text("{not json")

    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(path)


def test_load_rejects_json_text_values(iris_model):
    """Parameter data must be numbers; numeric strings are not converted."""
    content = to_json_dict(iris_model)
    content["parameters"]["dense_0.bias"]["data"] = ["0.5"] * 8

    with pytest.raises(
        ValueError, match=r"parameters\.dense_0\.bias\.data must contain only numbers"
    ):
        load_model(content)


def test_load_rejects_json_shape_disagreement(iris_model):
    """Data whose shape differs from the declared shape is rejected."""
    content = to_json_dict(iris_model)
    content["parameters"]["dense_0.bias"]["shape"] = [9]

    with pytest.raises(ValueError, match=r"dense_0\.bias\.data has shape \[8\]"):
        load_model(content)


def test_load_rejects_json_missing_field(iris_model):
    """A JSON form without parameters names the missing field."""
    content = to_json_dict(iris_model)
    del content["parameters"]

    with pytest.raises(ValueError, match="no 'parameters' field"):
        load_model(content)


def test_load_rejects_unsupported_source_type():
    """Only paths, bytes and dicts are sources."""
    with pytest.raises(TypeError, match="got int"):
        load_model(42)


_unpickled = []


def _record_unpickling():
    _unpickled.append(True)
    return "unpickled"


class _Payload:
    """An object whose unpickling calls _record_unpickling."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_load_rejects_pickled_parameter(iris_model):
    """An object array in the NPZ is rejected, and its pickle is never run."""
    members = _members(iris_model)
    members["dense_0.bias"] = np.array([_Payload()], dtype=object)
    data = _npz(members)

    with pytest.raises(ValueError, match=r"dense_0\.bias"):
        load_model(data)

    assert _unpickled == []


def test_load_rejects_pickled_meta(iris_model):
    """An object array in place of meta is rejected, and its pickle is never run."""
    members = _members(iris_model)
    members["meta"] = np.array([_Payload()], dtype=object)

    with pytest.raises(ValueError, match="'meta'"):
        load_model(_npz(members))

    assert _unpickled == []
