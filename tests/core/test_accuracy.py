"""Held-out scores of the example specs in examples/, so that the examples stay true.

Each test trains with ``core.fit`` on a stratified 80% of a built-in dataset and scores
``result.model.predict`` on the other 20%. The split seed is fixed at 1. With split seeds
1 to 4 and training seeds 0 to 3 every example stayed above its bar. Split seed 0 is not
used, because its iris test rows are hard to separate: scikit-learn's
LogisticRegression also scores 0.90 there.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import core
from core.split import split_indices

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPLIT_SEED = 1


def train_and_score(name):
    """Train the example spec on 80% of the dataset and return its held-out score:
    accuracy for classification, R2 for regression."""
    spec = json.loads((EXAMPLES / f"{name}.json").read_text())
    data = core.load_builtin(spec["dataset"])
    labels = data.y if data.task == "classification" else None
    train, test = split_indices(data.n_samples, 0.2, np.random.default_rng(SPLIT_SEED), labels)

    result = core.fit(spec, data.x[train], data.y[train], classes=data.classes, task=data.task)

    predictions = result.model.predict(data.x[test])
    if data.task == "classification":
        expected = np.asarray(data.classes, dtype=object)[data.y[test]]
        return float(np.mean(predictions == expected))
    residual = ((predictions - data.y[test]) ** 2).sum()
    total = ((data.y[test] - data.y[test].mean()) ** 2).sum()
    return float(1 - residual / total)


@pytest.mark.parametrize(
    ("name", "minimum"),
    [("digits", 0.96), ("iris", 0.93), ("wine", 0.94), ("breast_cancer", 0.95)],
)
def test_example_held_out_accuracy(name, minimum):
    """The example spec reaches its accuracy bar on the held-out 20%."""
    accuracy = train_and_score(name)

    assert accuracy >= minimum


def test_diabetes_example_held_out_r2():
    """The diabetes example spec reaches R2 >= 0.30 on the held-out 20%."""
    r2 = train_and_score("diabetes")

    assert r2 >= 0.30


@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer", "diabetes"])
def test_example_is_valid_job_spec(name):
    """Each example file is a valid job spec for its built-in dataset."""
    spec = core.parse_spec(json.loads((EXAMPLES / f"{name}.json").read_text()))

    assert spec.dataset == f"builtin:{name}"
    assert spec.preprocessing.standardize
