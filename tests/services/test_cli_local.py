import csv
import json
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

import core
from core.paramfile import load_model
from services.cli import app

IRIS_SPEC = {
    "dataset": "builtin:iris",
    "model": {
        "layers": [
            {"type": "dense", "units": 8, "activation": "relu"},
            {"type": "dense", "units": 3},
        ]
    },
    "optimizer": {"type": "adam", "lr": 0.02},
    "training": {"epochs": 5, "batch_size": 16, "validation_split": 0.2, "seed": 1},
    "preprocessing": {"standardize": True},
}

runner = CliRunner()


def _write_json(path, content):
    path.write_text(json.dumps(content))
    return path


def _write_iris_csv(path, columns=None):
    """Write iris as CSV with a text 'species' column; ``columns`` reorders the header."""
    iris = core.load_builtin("iris")
    header = [*iris.feature_names, "species"]
    rows = [[*map(str, x), iris.classes[label]] for x, label in zip(iris.x, iris.y, strict=True)]
    order = [header.index(name) for name in (columns or header)]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([header[i] for i in order])
        writer.writerows([[row[i] for i in order] for row in rows])
    return path


def _train(tmp_path, spec, *args):
    spec_path = _write_json(tmp_path / "spec.json", spec)
    return runner.invoke(app, ["train", str(spec_path), *args])


@pytest.fixture
def iris_model_path(tmp_path):
    out = tmp_path / "iris.npz"
    result = _train(tmp_path, IRIS_SPEC, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


# steep train ------------------------------------------------------------------


def test_train_builtin_writes_loadable_file(tmp_path):
    """train on builtin:iris writes an NPZ that loads and predicts the iris classes."""
    out = tmp_path / "model.npz"

    result = _train(tmp_path, IRIS_SPEC, "--out", str(out))

    assert result.exit_code == 0, result.output
    assert out.is_file()
    model = load_model(out)
    assert model.classes == ["setosa", "versicolor", "virginica"]
    assert model.predict(core.load_builtin("iris").x).shape == (150,)
    assert "test_accuracy" in result.stdout
    assert "completed" in result.stdout


def test_train_default_out_is_spec_stem(tmp_path, monkeypatch):
    """Without --out, the file is <spec stem>.npz in the current directory."""
    monkeypatch.chdir(tmp_path)
    spec_path = _write_json(tmp_path / "my-iris.json", IRIS_SPEC)

    result = runner.invoke(app, ["train", str(spec_path)])

    assert result.exit_code == 0, result.output
    assert (tmp_path / "my-iris.npz").is_file()


def test_train_json_out_writes_json(tmp_path):
    """An --out path ending in .json gets the JSON parameter file."""
    out = tmp_path / "model.json"

    result = _train(tmp_path, IRIS_SPEC, "--out", str(out))

    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["format"] == "steep.parameters/1"
    assert load_model(out).task == "classification"


def test_train_json_output_parses(tmp_path):
    """--json prints one JSON object with the results and the test metrics."""
    out = tmp_path / "model.npz"

    result = _train(tmp_path, IRIS_SPEC, "--out", str(out), "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stop_reason"] == "completed"
    assert summary["epochs_completed"] == 5
    assert summary["n_train"] == 120
    assert summary["n_test"] == 30
    assert summary["out"] == str(out)
    assert 0 <= summary["metrics"]["test_accuracy"] <= 1
    assert "val_loss" in summary["metrics"]


def test_train_is_reproducible(tmp_path):
    """The same spec and seed give the same parameters, bit for bit."""
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"

    _train(tmp_path, IRIS_SPEC, "--out", str(first))
    _train(tmp_path, IRIS_SPEC, "--out", str(second))

    params_a, params_b = load_model(first).parameters(), load_model(second).parameters()
    for name, value in params_a.items():
        assert np.array_equal(value, params_b[name]), name


def test_train_without_test_split(tmp_path):
    """--test-split 0 trains on every sample and reports no test metric."""
    result = _train(
        tmp_path, IRIS_SPEC, "--test-split", "0", "--json", "--out", str(tmp_path / "m.npz")
    )

    summary = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert summary["n_train"] == 150
    assert summary["n_test"] == 0
    assert not any(key.startswith("test_") for key in summary["metrics"])


def test_train_regression_reports_r2_and_mae(tmp_path):
    """A regression dataset reports test R2 and MAE instead of accuracy."""
    spec = {
        "dataset": "builtin:diabetes",
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "training": {"epochs": 2},
        "preprocessing": {"standardize": True},
    }

    result = _train(tmp_path, spec, "--json", "--out", str(tmp_path / "m.npz"))

    metrics = json.loads(result.stdout)["metrics"]
    assert result.exit_code == 0, result.output
    assert {"test_r2", "test_mae"} <= set(metrics)
    assert "test_accuracy" not in metrics


def test_train_tea_gives_exact_weight(tmp_path):
    """The one-weight example trains to w = 0.86 with an epoch loss of 81."""
    spec = {
        "dataset": "builtin:tea",
        "model": {
            "layers": [
                {
                    "type": "dense",
                    "units": 1,
                    "bias": False,
                    "init": {"type": "constant", "value": 0.5},
                }
            ]
        },
        "loss": {"type": "squared_error", "reduction": "sum"},
        "optimizer": {"type": "sgd", "lr": 0.01},
        "training": {"epochs": 1, "batch_size": 1, "shuffle": False, "dtype": "float64"},
    }
    out = tmp_path / "tea.json"

    result = _train(tmp_path, spec, "--test-split", "0", "--out", str(out), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["train_loss"] == 81.0
    assert load_model(out).parameters()["dense_0.weight"][0, 0] == 0.86


def test_train_csv_data_with_text_target(tmp_path):
    """--data trains on a CSV with text labels in its last column and no dataset in the spec."""
    data = _write_iris_csv(tmp_path / "iris.csv")
    spec = {key: value for key, value in IRIS_SPEC.items() if key != "dataset"}
    out = tmp_path / "m.npz"

    result = _train(tmp_path, spec, "--data", str(data), "--out", str(out), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_test"] == 30
    model = load_model(out)
    assert model.classes == ["setosa", "versicolor", "virginica"]
    assert model.feature_names == list(core.load_builtin("iris").feature_names)


def test_train_csv_data_with_target_option(tmp_path):
    """--target picks the target column when it is not the last."""
    iris = core.load_builtin("iris")
    data = _write_iris_csv(tmp_path / "iris.csv", ["species", *iris.feature_names])

    out = tmp_path / "m.npz"

    result = _train(
        tmp_path, IRIS_SPEC, "--data", str(data), "--target", "species", "--out", str(out)
    )

    assert result.exit_code == 0, result.output
    assert load_model(out).feature_names == list(iris.feature_names)


def test_train_csv_text_feature_one_hot(tmp_path):
    """A text feature column is one-hot encoded, as an upload to the service is, and the
    saved model predicts from raw CSV rows with that column."""
    iris = core.load_builtin("iris")
    data = tmp_path / "plants.csv"
    with data.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["site", *iris.feature_names, "species"])
        for index, (x, label) in enumerate(zip(iris.x, iris.y, strict=True)):
            writer.writerow(["north" if index % 2 else "south", *x, iris.classes[label]])
    out = tmp_path / "m.npz"

    trained = _train(tmp_path, IRIS_SPEC, "--data", str(data), "--out", str(out), "--json")
    predicted = runner.invoke(app, ["predict", str(out), str(data), "--json"])

    assert trained.exit_code == 0, trained.output
    model = load_model(out)
    assert model.encoding is not None
    assert model.encoding.columns[0].name == "site"
    assert model.encoding.columns[0].categories == ("north", "south")
    assert predicted.exit_code == 0, predicted.output
    assert len(json.loads(predicted.stdout)) == len(iris.y)


@pytest.mark.parametrize("suffix", ["npz", "json"])
def test_train_array_data(tmp_path, suffix):
    """--data also takes NPZ and JSON files with x and y."""
    iris = core.load_builtin("iris")
    data = tmp_path / f"iris.{suffix}"
    if suffix == "npz":
        np.savez(data, x=iris.x, y=iris.y)
    else:
        _write_json(data, {"x": iris.x.tolist(), "y": iris.y.tolist()})

    result = _train(
        tmp_path, IRIS_SPEC, "--data", str(data), "--json", "--out", str(tmp_path / "m.npz")
    )

    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "m.npz").classes == [0, 1, 2]


# steep train errors -------------------------------------------------------------


def test_train_invalid_spec_names_fields(tmp_path):
    """An invalid spec exits 2 and prints one line per invalid field path."""
    spec = json.loads(json.dumps(IRIS_SPEC))
    spec["model"]["layers"][0]["units"] = 0
    spec["optimizer"]["lr"] = -1

    result = _train(tmp_path, spec)

    assert result.exit_code == 2
    assert "model.layers.0.units: Input should be greater than 0, got 0" in result.stderr
    assert "optimizer.lr: Input should be greater than 0, got -1" in result.stderr
    assert not (tmp_path / "spec.npz").exists()


def test_train_invalid_spec_json_output(tmp_path):
    """With --json, an invalid spec prints a JSON error listing the fields."""
    spec = {**IRIS_SPEC, "training": {"epochs": 0}}

    result = _train(tmp_path, spec, "--json")

    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["details"] == [
        "training.epochs: Input should be greater than or equal to 1, got 0"
    ]


def test_train_spec_not_json(tmp_path):
    """A spec file that is not JSON exits 2 with that reason."""
    spec_path = tmp_path / "spec.json"
    spec_path.write_text("{ not json")

    result = runner.invoke(app, ["train", str(spec_path)])

    assert result.exit_code == 2
    assert "is not valid JSON" in result.stderr


def test_train_unknown_dataset_needs_data(tmp_path):
    """A dataset that is not built in exits 2 and points to --data."""
    result = _train(tmp_path, {**IRIS_SPEC, "dataset": "ds_123"})

    assert result.exit_code == 2
    assert "--data" in result.stderr


def test_train_units_mismatch_is_input_error(tmp_path):
    """Output units that do not fit the classes exit 2 with the fix."""
    spec = json.loads(json.dumps(IRIS_SPEC))
    spec["model"]["layers"][1]["units"] = 2

    result = _train(tmp_path, spec)

    assert result.exit_code == 2
    assert "set units to 3" in result.stderr


def test_train_split_too_large_for_data(tmp_path):
    """A test split that leaves nothing to train on exits 2, naming the option."""
    spec = {"dataset": "builtin:tea", "model": {"layers": [{"type": "dense", "units": 1}]}}

    result = _train(tmp_path, spec)

    assert result.exit_code == 2
    assert "--test-split 0.2" in result.stderr


def test_train_missing_out_folder(tmp_path):
    """An --out path in a missing folder fails before training."""
    result = _train(tmp_path, IRIS_SPEC, "--out", str(tmp_path / "missing" / "m.npz"))

    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_train_diverged_exits_1(tmp_path):
    """A run that diverges exits 1, prints why, and writes no parameter file."""
    spec = {
        "dataset": "builtin:diabetes",
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "optimizer": {"type": "sgd", "lr": 10},
    }
    out = tmp_path / "m.npz"

    result = _train(tmp_path, spec, "--out", str(out))

    assert result.exit_code == 1
    assert "training diverged in epoch 1" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,y\n1,2,0\n3,4\n", "line 3 has 2 values, but the header has 3 columns"),
        ("", "the CSV is empty"),
        ("a,b,y\n1,2,0\n1,x,1\n2,3,0\n", "line 3, column 'b': 'x' is not a number"),
        ("a,b,c\n1,2,0\n", "target column 'y' is not in the CSV header"),
    ],
)
def test_train_bad_csv_exits_2(tmp_path, content, message):
    """Malformed CSV data exits 2 with a message that names the line or column."""
    data = tmp_path / "data.csv"
    data.write_text(content)

    result = _train(tmp_path, IRIS_SPEC, "--data", str(data), "--target", "y")

    assert result.exit_code == 2
    assert message in result.stderr


# steep predict ------------------------------------------------------------------


def test_predict_prints_one_line_per_row(tmp_path, iris_model_path):
    """predict prints one label per CSV row, picking the model's columns by name."""
    iris = core.load_builtin("iris")
    columns = ["species", *reversed(iris.feature_names)]
    data = _write_iris_csv(tmp_path / "iris.csv", columns)

    result = runner.invoke(app, ["predict", str(iris_model_path), str(data)])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 150
    assert set(lines) <= {"setosa", "versicolor", "virginica"}
    expected = load_model(iris_model_path).predict(iris.x)
    assert lines == list(expected)


def test_predict_json_lists_predictions(tmp_path, iris_model_path):
    """--json prints the predictions as one JSON list."""
    iris = core.load_builtin("iris")
    data = tmp_path / "x.npz"
    np.savez(data, x=iris.x[:7])

    result = runner.invoke(app, ["predict", str(iris_model_path), str(data), "--json"])

    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 7


def test_predict_regression_values(tmp_path):
    """Regression predictions print as numbers that parse back to the model's values."""
    spec = {
        "dataset": "builtin:diabetes",
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "training": {"epochs": 2},
        "preprocessing": {"standardize": True},
    }
    model_path = tmp_path / "m.npz"
    _train(tmp_path, spec, "--out", str(model_path))
    x = core.load_builtin("diabetes").x[:5]
    data = _write_json(tmp_path / "x.json", {"x": x.tolist()})

    result = runner.invoke(app, ["predict", str(model_path), str(data)])

    assert result.exit_code == 0, result.output
    values = np.array([float(line) for line in result.stdout.splitlines()], dtype=np.float32)
    assert np.array_equal(values, load_model(model_path).predict(x))


def test_predict_missing_column(tmp_path, iris_model_path):
    """A CSV without one of the model's feature columns exits 2 and names it."""
    data = tmp_path / "x.csv"
    data.write_text("a,b\n1,2\n")

    result = runner.invoke(app, ["predict", str(iris_model_path), str(data)])

    assert result.exit_code == 2
    assert "no column 'sepal length (cm)'" in result.stderr


def test_predict_rejects_non_model_file(tmp_path):
    """A file that is not a parameter file exits 2."""
    model_path = tmp_path / "model.npz"
    model_path.write_bytes(b"not a model")
    data = tmp_path / "x.csv"
    data.write_text("a\n1\n")

    result = runner.invoke(app, ["predict", str(model_path), str(data)])

    assert result.exit_code == 2
    assert "cannot load" in result.stderr


# The installed command ------------------------------------------------------------


def test_installed_steep_command_trains(tmp_path):
    """The steep console script from pyproject.toml runs train in a real process."""
    steep = shutil.which("steep")
    if steep is None:
        pytest.skip("the steep command is not installed; run pip install -e .")
    spec_path = _write_json(tmp_path / "iris.json", IRIS_SPEC)

    completed = subprocess.run(
        [steep, "train", str(spec_path), "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["out"] == "iris.npz"
    assert load_model(tmp_path / "iris.npz").n_features == 4


def test_predict_raw_rows_for_text_model(tmp_path):
    """A model trained on a text column predicts from a CSV of raw values, by column name."""
    from core.encoding import Column, Encoding

    rng = np.random.default_rng(0)
    cities = rng.choice(["Bergen", "Oslo"], size=80)
    encoding = Encoding((Column("age"), Column("city", ("Bergen", "Oslo"))))
    x = encoding.encode([[float(rng.normal()), str(city)] for city in cities])
    spec = {
        "dataset": "upload",
        "model": {"layers": [{"type": "dense", "units": 2}]},
        "optimizer": {"type": "adam", "lr": 0.1},
        "training": {"epochs": 30},
    }
    result = core.fit(
        spec, x, np.where(cities == "Oslo", "yes", "no"),
        feature_names=encoding.feature_names, encoding=encoding,
    )  # fmt: skip
    model_path = tmp_path / "text.npz"
    core.save_npz(result.model, model_path)
    rows = tmp_path / "rows.csv"
    rows.write_text("city,age,churn\nOslo,0.2,yes\nBergen,-1,no\n", encoding="utf-8")

    outcome = runner.invoke(app, ["predict", str(model_path), str(rows)])

    assert outcome.exit_code == 0, outcome.output
    assert outcome.output.split() == ["yes", "no"]
