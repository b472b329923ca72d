import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import core.datasets
from core.datasets import BUILTIN_NAMES, Dataset, load_builtin, real

GENERATED = ("moons", "circles", "spirals", "sine")
REAL = ("iris", "wine", "breast_cancer", "digits", "diabetes")
CLASSIFICATION = ("xor", "moons", "circles", "spirals", "iris", "wine", "breast_cancer", "digits")
REGRESSION = ("tea", "sine", "diabetes")

# name: (n_samples, n_features, n_outputs, classes or None)
EXPECTED_SIZES = {
    "tea": (1, 1, 1, None),
    "xor": (4, 2, 2, ("0", "1")),
    "moons": (500, 2, 2, ("0", "1")),
    "circles": (500, 2, 2, ("0", "1")),
    "spirals": (600, 2, 3, ("0", "1", "2")),
    "sine": (500, 1, 1, None),
    "iris": (150, 4, 3, ("setosa", "versicolor", "virginica")),
    "wine": (178, 13, 3, ("class_0", "class_1", "class_2")),
    "breast_cancer": (569, 30, 2, ("malignant", "benign")),
    "digits": (1797, 64, 10, tuple("0123456789")),
    "diabetes": (442, 10, 1, None),
}


def test_builtin_names_list_every_dataset():
    """BUILTIN_NAMES lists the eleven datasets in the documented order."""
    assert BUILTIN_NAMES == (
        "tea", "xor", "moons", "circles", "spirals", "sine",
        "iris", "wine", "breast_cancer", "digits", "diabetes",
    )  # fmt: skip
    assert set(BUILTIN_NAMES) == set(EXPECTED_SIZES)
    assert set(BUILTIN_NAMES) == set(CLASSIFICATION) | set(REGRESSION)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_load_builtin_sizes(name):
    """Each dataset has the documented numbers of samples, features, outputs and classes."""
    n_samples, n_features, n_outputs, classes = EXPECTED_SIZES[name]

    dataset = load_builtin(name)

    assert isinstance(dataset, Dataset)
    assert dataset.name == name
    assert dataset.n_samples == n_samples
    assert dataset.n_features == n_features
    assert dataset.n_outputs == n_outputs
    assert dataset.classes == classes
    assert dataset.x.shape == (n_samples, n_features)
    assert dataset.y.shape == (n_samples,)
    assert len(dataset.feature_names) == n_features
    assert len(set(dataset.feature_names)) == n_features
    assert all(isinstance(feature, str) for feature in dataset.feature_names)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_load_builtin_x_float64_finite(name):
    """x is float64 without NaN or infinity, and so is y."""
    dataset = load_builtin(name)

    assert dataset.x.dtype == np.float64
    assert np.isfinite(dataset.x).all()
    assert np.isfinite(dataset.y).all()


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_y_class_indices(name):
    """Classification targets are int64 indices that use every class."""
    dataset = load_builtin(name)

    assert dataset.task == "classification"
    assert dataset.y.dtype == np.int64
    assert dataset.y.min() == 0
    assert dataset.y.max() == len(dataset.classes) - 1
    assert np.unique(dataset.y).size == len(dataset.classes)


@pytest.mark.parametrize("name", REGRESSION)
def test_regression_y_float64(name):
    """Regression targets are float64 and the dataset has no classes."""
    dataset = load_builtin(name)

    assert dataset.task == "regression"
    assert dataset.y.dtype == np.float64
    assert dataset.classes is None


def test_tea_values():
    """tea is the one-weight example, x = [[2.0]] and y = [10.0]."""
    dataset = load_builtin("tea")

    np.testing.assert_array_equal(dataset.x, [[2.0]])
    np.testing.assert_array_equal(dataset.y, [10.0])
    assert dataset.feature_names == ("x",)


def test_xor_truth_table():
    """xor is the four-row XOR truth table."""
    dataset = load_builtin("xor")

    np.testing.assert_array_equal(dataset.x, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(dataset.y, [0, 1, 1, 0])


@pytest.mark.parametrize("name", GENERATED)
def test_generated_same_seed_same_data(name):
    """Generating a dataset twice with one seed gives identical arrays."""
    first = load_builtin(name, seed=7)
    second = load_builtin(name, seed=7)

    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.y, second.y)


@pytest.mark.parametrize("name", GENERATED)
def test_generated_other_seed_other_data(name):
    """Different seeds give different draws of a generated dataset."""
    first = load_builtin(name, seed=0)
    second = load_builtin(name, seed=1)

    assert first.x.shape == second.x.shape
    assert not np.array_equal(first.x, second.x)


def test_default_seed_is_zero():
    """Omitting seed is the same as seed=0."""
    default = load_builtin("moons")
    seeded = load_builtin("moons", seed=0)

    np.testing.assert_array_equal(default.x, seeded.x)


@pytest.mark.parametrize("name", ["tea", "xor", *REAL])
def test_fixed_datasets_ignore_seed(name):
    """Datasets that are not generated are the same for every seed."""
    first = load_builtin(name, seed=0)
    second = load_builtin(name, seed=3)

    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.y, second.y)


def test_moons_shape_of_classes():
    """Class 0 of moons lies around the upper half circle and class 1 around the lower."""
    dataset = load_builtin("moons")
    upper = dataset.x[dataset.y == 0]
    lower = dataset.x[dataset.y == 1]

    assert len(upper) == 250
    assert len(lower) == 250
    assert upper[:, 1].mean() > 0.4
    assert lower[:, 1].mean() < 0.1
    assert abs(np.linalg.norm(upper, axis=1).mean() - 1.0) < 0.05


def test_circles_radii():
    """Class 0 of circles lies on radius 1 and class 1 on radius 0.5."""
    dataset = load_builtin("circles")
    radius = np.linalg.norm(dataset.x, axis=1)

    assert abs(radius[dataset.y == 0].mean() - 1.0) < 0.02
    assert abs(radius[dataset.y == 1].mean() - 0.5) < 0.02
    assert (dataset.y == 0).sum() == 250


def test_spirals_arms():
    """spirals has 200 points per arm inside the unit disk."""
    dataset = load_builtin("spirals")

    np.testing.assert_array_equal(np.bincount(dataset.y), [200, 200, 200])
    assert np.linalg.norm(dataset.x, axis=1).max() <= 1.0 + 1e-12


def test_generated_classes_shuffled():
    """Rows of the generated classification data are shuffled, so the last 20% has every class."""
    for name in ("moons", "circles", "spirals"):
        dataset = load_builtin(name)
        tail = dataset.y[-dataset.n_samples // 5 :]

        assert np.unique(tail).size == len(dataset.classes), name


def test_sine_follows_sin():
    """sine has x in [-pi, pi] and y within noise of sin(x)."""
    dataset = load_builtin("sine")
    residual = dataset.y - np.sin(dataset.x[:, 0])

    assert dataset.x.min() >= -np.pi
    assert dataset.x.max() <= np.pi
    assert abs(residual.mean()) < 0.03
    assert 0.07 < residual.std() < 0.13


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_prefix_same_dataset(name):
    """The id "builtin:<name>" loads the same data as the bare name."""
    bare = load_builtin(name, seed=2)
    prefixed = load_builtin(f"builtin:{name}", seed=2)

    assert prefixed.name == name
    np.testing.assert_array_equal(bare.x, prefixed.x)
    np.testing.assert_array_equal(bare.y, prefixed.y)


@pytest.mark.parametrize("name", ["mnist", "builtin:mnist", "Iris", "", "builtin:", "iris "])
def test_unknown_name_raises(name):
    """An unknown name raises ValueError that quotes the name and lists the known ones."""
    with pytest.raises(ValueError) as error:
        load_builtin(name)

    message = str(error.value)
    assert repr(name) in message
    for known in BUILTIN_NAMES:
        assert known in message


def test_non_string_name_raises_type_error():
    """A name that is not a str raises TypeError."""
    with pytest.raises(TypeError, match="name must be a str"):
        load_builtin(3)


@pytest.mark.parametrize("seed", [1.5, "0", True, None])
def test_non_integer_seed_raises_type_error(seed):
    """A seed that is not an int raises TypeError."""
    with pytest.raises(TypeError, match="seed must be an int"):
        load_builtin("moons", seed=seed)


def test_negative_seed_raises_value_error():
    """A negative seed raises ValueError that shows the value."""
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        load_builtin("moons", seed=-1)


def test_numpy_integer_seed_accepted():
    """A NumPy integer seed works like the same Python int."""
    numpy_seed = load_builtin("sine", seed=np.int64(4))
    python_seed = load_builtin("sine", seed=4)

    np.testing.assert_array_equal(numpy_seed.x, python_seed.x)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_arrays_read_only(name):
    """Writing into a loaded array raises, so no caller can change the cached data."""
    dataset = load_builtin(name)

    with pytest.raises(ValueError, match="read-only"):
        dataset.x[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        dataset.y[0] = 1


@pytest.mark.parametrize("name", REAL)
def test_real_data_cached(name):
    """Loading a real dataset twice returns the same parsed arrays."""
    first = load_builtin(name)
    second = load_builtin(name)

    assert first.x is second.x
    assert first.y is second.y


@pytest.mark.parametrize("name", REAL)
def test_real_description_names_source(name):
    """The description of each real dataset names its origin and scikit-learn's license."""
    dataset = load_builtin(name)

    assert "scikit-learn" in dataset.description
    assert "BSD-3-Clause" in dataset.description


def test_dataset_frozen():
    """Dataset fields cannot be reassigned."""
    dataset = load_builtin("tea")

    with pytest.raises(AttributeError):
        dataset.name = "coffee"


def _sklearn_loaders():
    datasets = pytest.importorskip("sklearn.datasets")
    return {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "diabetes": lambda: datasets.load_diabetes(scaled=False),
    }


@pytest.mark.parametrize("name", REAL)
def test_real_data_matches_sklearn(name):
    """Each real dataset equals scikit-learn's own loader: x, y, features and classes."""
    reference = _sklearn_loaders()[name]()

    dataset = load_builtin(name)

    np.testing.assert_array_equal(dataset.x, reference.data)
    np.testing.assert_array_equal(dataset.y, reference.target)
    assert dataset.feature_names == tuple(str(f) for f in reference.feature_names)
    if dataset.classes is not None:
        assert dataset.classes == tuple(str(c) for c in reference.target_names)


def test_dataset_regression_with_several_targets():
    """A regression Dataset with y of shape (n_samples, n_outputs) has n_outputs outputs."""
    dataset = Dataset(
        name="two_targets",
        x=np.zeros((5, 3)),
        y=np.zeros((5, 2)),
        task="regression",
        feature_names=("a", "b", "c"),
        classes=None,
        description="Zeros.",
    )

    assert dataset.n_outputs == 2
    assert dataset.n_samples == 5
    assert dataset.n_features == 3


def _dataset_fields(**changes):
    fields = {
        "name": "small",
        "x": np.zeros((4, 2)),
        "y": np.array([0, 1, 1, 0], dtype=np.int64),
        "task": "classification",
        "feature_names": ("a", "b"),
        "classes": ("no", "yes"),
        "description": "Four rows.",
    }
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"task": "ranking"}, ValueError, "task must be one of"),
        ({"x": [[0.0, 0.0]]}, TypeError, "x must be a numpy ndarray"),
        ({"x": np.zeros(4)}, ValueError, "x must have shape"),
        ({"x": np.zeros((4, 2), dtype=np.float32)}, TypeError, "dtype float64, got float32"),
        ({"feature_names": ("a",)}, ValueError, "one name per column"),
        ({"y": np.array([0, 1, 1], dtype=np.int64)}, ValueError, "one row per sample"),
        ({"y": np.array([0.0, 1.0, 1.0, 0.0])}, TypeError, "dtype int64"),
        ({"y": np.array([0, 1, 2, 0], dtype=np.int64)}, ValueError, "class indices in 0..1"),
        ({"y": np.array([0, -1, 1, 0], dtype=np.int64)}, ValueError, "class indices in 0..1"),
        ({"classes": None}, ValueError, "classes must name at least one class"),
        (
            {"task": "regression", "y": np.zeros(4), "classes": ("no", "yes")},
            ValueError,
            "classes must be None",
        ),
        (
            {"task": "regression", "y": np.zeros(4, dtype=np.int64), "classes": None},
            TypeError,
            "dtype float64 for regression",
        ),
        (
            {"task": "regression", "y": np.zeros((4, 0)), "classes": None},
            ValueError,
            "n_outputs >= 1",
        ),
    ],
)
def test_dataset_rejects_inconsistent_fields(changes, error, message):
    """Dataset raises on arrays or names that break its documented rules."""
    fields = _dataset_fields(**changes)

    with pytest.raises(error, match=message):
        Dataset(**fields)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3,2,a,b\n1.0,2.0,0\n3.0,4.0,1\n", r"header gives 3 rows .* shape \(2, 3\)"),
        ("2,2,a,b\n1.0,2.0,0\n3.0,4.0,0.5\n", "whole class indices"),
    ],
)
def test_invalid_data_file_raises(monkeypatch, text, message):
    """A data file that disagrees with its header or has fractional classes raises ValueError."""
    monkeypatch.setattr(real, "_read_data_text", lambda filename: text)

    with pytest.raises(ValueError, match=message) as error:
        real._read_csv_with_header.__wrapped__("broken.csv")

    assert "broken.csv" in str(error.value)


def test_datasets_import_only_numpy_and_stdlib():
    """core.datasets imports nothing but NumPy, the standard library and its own modules."""
    package_dir = Path(core.datasets.__file__).parent
    allowed = set(sys.stdlib_module_names) | {"numpy", "core"}

    for source in package_dir.glob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in allowed, f"{source.name} imports {root}"
