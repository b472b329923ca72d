"""Reading ``/metrics`` in tests: an operator's client and the samples as a dictionary."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.services.auth import bearer, tenant_key

# With the tests' checkpoint_interval_seconds of 0, a worker flushes, and so renews its
# lease, at every epoch end but the last. xor has 4 samples, and there is no validation split.
XOR_SPEC: dict[str, Any] = {
    "experiment": "xor-secret-experiment",
    "dataset": "builtin:xor",
    "model": {
        "layers": [
            {"type": "dense", "units": 8, "activation": "tanh"},
            {"type": "dense", "units": 2},
        ]
    },
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.05},
    "training": {"epochs": 20, "batch_size": 4, "seed": 0},
}
XOR_SAMPLES = 4

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def operator_client(app: FastAPI) -> TestClient:
    """A client of ``app`` that sends a new operator key."""
    return TestClient(app, headers=bearer(tenant_key(app.state.settings, "ops", operator=True)))


def read_metrics(client: TestClient) -> Samples:
    """GET /metrics and return every sample, keyed by name and sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """Return one sample's value, or 0 when the series does not exist yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
