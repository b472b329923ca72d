"""The memory estimate against the measured peak of real training runs.

Each case trains in a fresh interpreter, checkpointing after every epoch and writing
the weights file as a worker does. The test compares ``estimate_memory`` with the
growth of the process: its peak resident set size (``VmHWM``) at the end minus the
resident set size of the idle interpreter with numpy and core imported. The baseline
is the current resident set size, not the peak, because compiling modules at import
can peak above it. ``ru_maxrss`` would be wrong here: Linux carries it across fork
and exec, so a child of a large pytest process starts with the parent's peak.
Linux only: it reads ``/proc/self/status`` and ``/proc/self/statm``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from core.memory import estimate_memory, format_bytes
from core.spec import parse_spec

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/status and /proc/self/statm"
)

# The estimate must lie within these factors of the measured growth.
LOW, HIGH = 0.7, 1.5

MEASURE = """
import json, os, sys
import numpy as np
import core

def peak_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # the line gives KiB
    raise RuntimeError("/proc/self/status has no VmHWM line")

def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

class Checkpointing(core.Callback):
    def on_epoch_end(self, trainer, record):
        self.checkpoint = trainer.state_dict().to_bytes()

case = json.loads(sys.argv[1])
n, f = case["n_samples"], case["n_features"]
baseline = resident_bytes()
rng = np.random.default_rng(0)
x = rng.standard_normal((n, f))
y = rng.integers(0, case["n_classes"], n) if case["task"] == "classification" else x[:, 0] * 2
trainer = core.make_trainer(case["spec"], x, y, task=case["task"], callback=Checkpointing())
del x, y
result = trainer.run()
weights = core.to_npz_bytes(result.model)
print(json.dumps({"growth": peak_bytes() - baseline}))
"""


def _dense(units: int, activation: str = "relu") -> dict[str, Any]:
    return {"type": "dense", "units": units, "activation": activation}


CASES = {
    # Preparing 200,000 x 40 values dominates.
    "data-heavy": {
        "n_samples": 200_000,
        "n_features": 40,
        "n_classes": 3,
        "task": "classification",
        "spec": {
            "model": {"layers": [_dense(16), {"type": "dense", "units": 3}]},
            "training": {"epochs": 2, "batch_size": 256, "validation_split": 0.2},
            "preprocessing": {"standardize": True},
        },
    },
    # 1.6 million parameters with Adam, the best-weights copy and checkpoints dominate.
    "parameter-heavy": {
        "n_samples": 2000,
        "n_features": 512,
        "n_classes": 10,
        "task": "classification",
        "spec": {
            "model": {"layers": [_dense(1024), _dense(1024), {"type": "dense", "units": 10}]},
            "training": {
                "epochs": 2,
                "batch_size": 64,
                "validation_split": 0.2,
                "early_stopping": {"patience": 5},
            },
        },
    },
    # float64, imputation, dropout and GELU, on a regression.
    "mixed": {
        "n_samples": 30_000,
        "n_features": 100,
        "n_classes": 1,
        "task": "regression",
        "spec": {
            "model": {
                "layers": [
                    _dense(256, "gelu"),
                    {"type": "dropout", "rate": 0.2},
                    _dense(256, "tanh"),
                    {"type": "dense", "units": 1},
                ]
            },
            "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9},
            "training": {
                "epochs": 2,
                "batch_size": 512,
                "validation_split": 0.1,
                "dtype": "float64",
            },
            "preprocessing": {"impute": "mean", "standardize": True},
        },
    },
}


def _measure(case: dict[str, Any]) -> int:
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(case)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=True,
    )
    growth: int = json.loads(completed.stdout)["growth"]
    return growth


@pytest.mark.parametrize("name", list(CASES))
def test_estimate_close_to_measured_peak(name: str) -> None:
    """The estimated peak is within 0.7x to 1.5x of the measured growth of the process."""
    case = CASES[name]
    spec = parse_spec({"dataset": "builtin:iris", **case["spec"]})
    estimate = estimate_memory(
        spec, case["n_samples"], case["n_features"], case["n_classes"], case["task"]
    )

    growth = _measure({**case, "spec": {"dataset": "builtin:iris", **case["spec"]}})

    ratio = estimate.peak_bytes / growth
    described = (
        f"estimate {estimate.describe(spec.training.dtype)}, measured {format_bytes(growth)}"
    )
    assert LOW <= ratio <= HIGH, f"{name}: ratio {ratio:.2f}; {described}"


def test_parameter_part_counts_optimizer_state() -> None:
    """Adam keeps two state arrays per parameter where SGD keeps one, in each of its copies."""
    base = {
        "dataset": "builtin:iris",
        "model": {"layers": [{"type": "dense", "units": 100}]},
        "training": {"epochs": 1},
    }
    adam = parse_spec({**base, "optimizer": "adam"})
    sgd = parse_spec({**base, "optimizer": "sgd"})
    n_parameters = 10 * 100 + 100

    adam_bytes = estimate_memory(adam, 1000, 10, 100, "regression").parameter_bytes
    sgd_bytes = estimate_memory(sgd, 1000, 10, 100, "regression").parameter_bytes

    # params, gradient, scratch, epoch-start params, and each state array three times
    assert adam_bytes == n_parameters * 4 * (4 + 3 * 2)
    assert sgd_bytes == n_parameters * 4 * (4 + 3 * 1)


def test_format_bytes_uses_binary_units() -> None:
    """Sizes print with B, KiB, MiB or GiB and one decimal above bytes."""
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**20 + 2**19) == "3.5 MiB"
    assert format_bytes(6 * 2**30) == "6.0 GiB"
    assert format_bytes(5000 * 2**30) == "5000.0 GiB"
