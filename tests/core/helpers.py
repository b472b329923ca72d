"""Small specs, data and networks that several test modules share."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.network import Network
from core.spec import ModelSpec

# The one-weight example: y_hat = w * x with x = 2, y = 10 and w = 0.5.
TEA_SPEC: dict[str, Any] = {
    "dataset": "builtin:tea",
    "model": {
        "layers": [
            {"type": "dense", "units": 1, "bias": False, "init": {"type": "constant", "value": 0.5}}
        ]
    },
    "loss": {"type": "squared_error", "reduction": "sum"},
    "optimizer": {"type": "sgd", "lr": 0.01},
    "training": {"epochs": 1, "batch_size": 1, "shuffle": False, "dtype": "float64"},
}


def random_network(
    layers: list[dict[str, Any]], n_features: int, seed: int = 0, std: float = 0.5
) -> Network:
    """Build a float64 network and draw every parameter, biases too, from N(0, std**2)."""
    network = Network(ModelSpec.model_validate({"layers": layers}), n_features, "float64")
    network.params[...] = np.random.default_rng(seed).normal(0.0, std, network.n_parameters)
    return network


def blobs(
    n_samples: int = 60, n_features: int = 4, n_classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters, one per class: x (n_samples, n_features) float64, y (n_samples,) int64."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    centers = rng.normal(0.0, 2.0, (n_classes, n_features))
    x = centers[y] + rng.normal(0.0, 1.0, (n_samples, n_features))
    return x, y.astype(np.int64)


def linear_regression_data(
    n_samples: int = 64, n_features: int = 3, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """x (n_samples, n_features) and y = x @ w + 1 + noise, shape (n_samples,)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, n_features))
    weight = rng.normal(size=n_features)
    y = x @ weight + 1.0 + noise * rng.normal(size=n_samples)
    return x, y


def mlp_spec(n_outputs: int, *, loss: str = "cross_entropy", **training: Any) -> dict[str, Any]:
    """A spec for a small MLP with dropout, trained with adam on shuffled minibatches."""
    return {
        "dataset": "test",
        "model": {
            "layers": [
                {"type": "dense", "units": 8, "activation": "relu"},
                {"type": "dropout", "rate": 0.2},
                {"type": "dense", "units": n_outputs},
            ]
        },
        "loss": loss,
        "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 8, "batch_size": 8, **training},
        "preprocessing": {"standardize": True},
    }
