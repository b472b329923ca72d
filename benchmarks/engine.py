"""Time steep's engine against scikit-learn's MLPClassifier and PyTorch on one workload.

The workload: 20,000 seeded Gaussian-blob samples of 784 features in 10 classes, a
784-256-128-10 ReLU network, softmax cross-entropy, Adam (lr 1e-3), batch 128, 3
epochs, no validation split, no early stopping. Every trainer runs in this process
with the same BLAS thread count.

Run from the repository root::

    python3 benchmarks/engine.py                # all trainers, text report
    python3 benchmarks/engine.py --threads 1 --json

Seconds per epoch are the wall time of one whole training call (data in memory to
trained model) divided by the number of epochs, best of ``--repeat`` runs after a
one-epoch warm-up. "The floor" is the time the network's 8 matrix products per
batch take alone in NumPy float32. benchmarks/README.md explains every number.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

# Running the file directly puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core

N_CLASSES = 10
N_FEATURES = 784
HIDDEN_UNITS = (256, 128)
BATCH_SIZE = 128
LR = 1e-3
# Standard deviation of each blob center's coordinates, against unit noise: two
# centers lie about 0.1 * sqrt(2 * 784) = 4 noise deviations apart, so 3 epochs
# leave a training loss well above 0 and the loss comparison means something.
CENTER_SCALE = 0.1


@dataclass
class Workload:
    n_samples: int
    epochs: int
    threads: int
    repeat: int


@dataclass
class Timing:
    """One trainer's result: seconds per epoch of every timed run and its final loss."""

    name: str
    dtype: str
    run_seconds_per_epoch: list[float]
    final_train_loss: float  # the trainer's own mean batch loss over the last epoch
    full_data_loss: float  # cross-entropy of the trained model on all samples, in float64
    notes: list[str] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return min(self.run_seconds_per_epoch)


def make_blobs(n_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw x (n_samples, 784) float64 around 10 Gaussian centers, and labels (n_samples,)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=CENTER_SCALE, size=(N_CLASSES, N_FEATURES))
    labels = rng.integers(0, N_CLASSES, size=n_samples)
    x = centers[labels] + rng.normal(size=(n_samples, N_FEATURES))
    return x, labels.astype(np.int64)


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Return the mean of -log p[label] over the samples, computed in float64."""
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-300, None)).mean())


def time_runs(train: Callable[[int], Any], workload: Workload) -> tuple[list[float], Any]:
    """Run ``train(epochs)`` once for one epoch as a warm-up, then ``repeat`` timed times.

    Returns the seconds per epoch of each timed run and the last run's return value.
    """
    train(1)
    seconds = []
    result = None
    for _ in range(workload.repeat):
        started = time.perf_counter()
        result = train(workload.epochs)
        seconds.append((time.perf_counter() - started) / workload.epochs)
    return seconds, result


# Trainers ---------------------------------------------------------------------


def steep_spec(epochs: int, dtype: str) -> dict[str, Any]:
    hidden = [{"type": "dense", "units": units, "activation": "relu"} for units in HIDDEN_UNITS]
    return {
        "dataset": "benchmark-blobs",
        "model": {"layers": [*hidden, {"type": "dense", "units": N_CLASSES}]},
        "loss": "cross_entropy",
        "optimizer": {"type": "adam", "lr": LR},
        "training": {
            "epochs": epochs,
            "batch_size": BATCH_SIZE,
            "shuffle": True,
            "seed": 0,
            "validation_split": 0.0,
            "dtype": dtype,
        },
    }


def bench_steep(x: np.ndarray, y: np.ndarray, dtype: str, workload: Workload) -> Timing:
    def train(epochs: int) -> core.FitResult:
        return core.fit(steep_spec(epochs, dtype), x, y)

    seconds, result = time_runs(train, workload)
    in_loop = sum(record["epoch_seconds"] for record in result.history) / len(result.history)
    return Timing(
        name="steep",
        dtype=dtype,
        run_seconds_per_epoch=seconds,
        final_train_loss=result.history[-1]["train_loss"],
        full_data_loss=cross_entropy(result.model.predict_outputs(x), y),
        notes=[f"of which the training loop itself: {in_loop:.3f} s per epoch"],
    )


def bench_sklearn(x: np.ndarray, y: np.ndarray, dtype: str, workload: Workload) -> Timing:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def train(epochs: int) -> MLPClassifier:
        model = MLPClassifier(
            hidden_layer_sizes=HIDDEN_UNITS,
            solver="adam",
            batch_size=BATCH_SIZE,
            max_iter=epochs,
            learning_rate_init=LR,
            alpha=0,
            tol=0,
            n_iter_no_change=1000,
            early_stopping=False,
            shuffle=True,
            random_state=0,
        )
        # max_iter is the epoch count here, so stopping there is the plan, not a failure.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(x, y)

    seconds, model = time_runs(train, workload)
    notes = []
    if model.coefs_[0].dtype != x.dtype:
        notes.append(f"trained in {model.coefs_[0].dtype}, not {x.dtype}")
    return Timing(
        name="scikit-learn",
        dtype=dtype,
        run_seconds_per_epoch=seconds,
        final_train_loss=float(model.loss_curve_[-1]),
        full_data_loss=cross_entropy(model.predict_proba(x), y),
        notes=notes,
    )


def bench_pytorch(x: np.ndarray, y: np.ndarray, workload: Workload) -> Timing:
    import torch
    from torch import nn

    torch.set_num_threads(workload.threads)
    x_all = torch.from_numpy(x)
    y_all = torch.from_numpy(y)
    last_losses: list[float] = []

    def train(epochs: int) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(N_FEATURES, HIDDEN_UNITS[0]),
            nn.ReLU(),
            nn.Linear(HIDDEN_UNITS[0], HIDDEN_UNITS[1]),
            nn.ReLU(),
            nn.Linear(HIDDEN_UNITS[1], N_CLASSES),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        loss_fn = nn.CrossEntropyLoss()
        n_samples = len(x_all)
        for _ in range(epochs):
            order = torch.randperm(n_samples)
            total = 0.0
            for start in range(0, n_samples, BATCH_SIZE):
                rows = order[start : start + BATCH_SIZE]
                optimizer.zero_grad()
                loss = loss_fn(model(x_all[rows]), y_all[rows])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(rows)
            last_losses.append(total / n_samples)
        return model

    seconds, model = time_runs(train, workload)
    with torch.no_grad():
        probabilities = torch.softmax(model(x_all), dim=1).numpy()
    return Timing(
        name="pytorch",
        dtype=str(x.dtype),
        run_seconds_per_epoch=seconds,
        final_train_loss=last_losses[-1],
        full_data_loss=cross_entropy(probabilities, y),
        notes=[
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"MKL {'on' if torch.backends.mkl.is_available() else 'off'}"
        ],
    )


# The floor ----------------------------------------------------------------------


def batch_sizes(n_samples: int) -> list[int]:
    """Return every batch's size in one epoch: full batches and a smaller last one."""
    full, rest = divmod(n_samples, BATCH_SIZE)
    return [BATCH_SIZE] * full + ([rest] if rest else [])


def floor_seconds_per_epoch(workload: Workload) -> float:
    """Time the 8 float32 matrix products per batch that training this network needs.

    Forward: x @ w1, h1 @ w2, h2 @ w3. Backward: the weight gradients h.T @ g of all
    three layers and the input gradients g @ w.T of layers 2 and 3. Every operand
    is preallocated and every product writes with ``out=``; best of ``repeat``.
    """
    rng = np.random.default_rng(0)
    widths = [N_FEATURES, *HIDDEN_UNITS, N_CLASSES]

    def arrays_for(batch: int) -> dict[str, Any]:
        def draw(*shape: int) -> np.ndarray:
            return rng.standard_normal(shape, dtype=np.float32)

        weights = [draw(n_in, n_out) for n_in, n_out in itertools.pairwise(widths)]
        activations = [draw(batch, width) for width in widths]  # x, h1, h2, logits
        grads = [draw(batch, width) for width in widths]  # dL/d of each of those
        weight_grads = [np.empty_like(w) for w in weights]
        return {"w": weights, "a": activations, "g": grads, "gw": weight_grads}

    def one_batch(arrays: dict[str, Any]) -> None:
        w, a, g, gw = arrays["w"], arrays["a"], arrays["g"], arrays["gw"]
        for layer in range(3):
            np.matmul(a[layer], w[layer], out=a[layer + 1])  # (b, n_in) @ (n_in, n_out)
        for layer in (2, 1, 0):
            np.matmul(a[layer].T, g[layer + 1], out=gw[layer])  # (n_in, b) @ (b, n_out)
            if layer > 0:
                np.matmul(g[layer + 1], w[layer].T, out=g[layer])  # (b, n_out) @ (n_out, n_in)

    sizes = batch_sizes(workload.n_samples)
    arrays_by_size = {size: arrays_for(size) for size in set(sizes)}
    for arrays in arrays_by_size.values():
        one_batch(arrays)
    best = math.inf
    for _ in range(workload.repeat):
        started = time.perf_counter()
        for size in sizes:
            one_batch(arrays_by_size[size])
        best = min(best, time.perf_counter() - started)
    return best


# Report ---------------------------------------------------------------------------


def describe_machine(threads: int) -> dict[str, Any]:
    cpu_model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    blas = [
        {
            "library": info.get("internal_api"),
            "version": info.get("version"),
            "kernel": info.get("architecture"),
            "num_threads": info.get("num_threads"),
            "file": Path(info.get("filepath", "")).name,
        }
        for info in threadpool_info()
    ]
    return {
        "cpu_model": cpu_model,
        "n_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": threads,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        # Other processes slow the trainers and the floor unevenly, so the report shows the load.
        "load_average_before": os.getloadavg()[0],
        "threadpools": blas,
    }


def ratios(timings: list[Timing]) -> list[dict[str, Any]]:
    """Other trainer's seconds per epoch divided by steep's: above 1 means steep is faster."""
    by_key = {(t.name, t.dtype): t for t in timings}
    pairs = [
        (("steep", "float32"), ("scikit-learn", "float32")),
        (("steep", "float64"), ("scikit-learn", "float64")),
        (("steep", "float32"), ("pytorch", "float32")),
        (("steep", "float32"), ("steep", "float64")),
    ]
    rows = []
    for steep_key, other_key in pairs:
        if steep_key in by_key and other_key in by_key:
            rows.append(
                {
                    "steep": " ".join(steep_key),
                    "other": " ".join(other_key),
                    "speedup": by_key[other_key].seconds_per_epoch
                    / by_key[steep_key].seconds_per_epoch,
                }
            )
    return rows


def print_machine(machine: dict[str, Any], workload: Workload) -> None:
    print(f"CPU: {machine['cpu_model']} ({machine['n_cpus']} logical CPUs)")
    print(f"Python {machine['python']}, NumPy {machine['numpy']}")
    print(f"OPENBLAS_CORETYPE: {machine['openblas_coretype'] or 'not set'}")
    print(
        f"1-minute load average: {machine['load_average_before']:.2f} before the runs, "
        f"{machine['load_average_after']:.2f} after"
    )
    for pool in machine["threadpools"]:
        kernel = f", kernel {pool['kernel']}" if pool["kernel"] else ""
        print(
            f"  {pool['library']} {pool['version']}{kernel}: "
            f"{pool['num_threads']} threads ({pool['file']})"
        )
    print(
        f"Workload: {workload.n_samples} samples x {N_FEATURES} features, {N_CLASSES} classes, "
        f"784-256-128-10 ReLU, Adam lr {LR:g}, batch {BATCH_SIZE}, {workload.epochs} epochs, "
        f"{workload.threads} threads, best of {workload.repeat} runs"
    )


def print_timings(floor: float, timings: list[Timing]) -> None:
    print(f"floor (8 float32 matmuls per batch): {floor:.3f} s per epoch")
    print()
    header = f"{'trainer':<24}{'s/epoch':>9}{'x floor':>9}{'floor %':>9}"
    print(f"{header}{'train loss':>12}{'full loss':>11}")
    for t in timings:
        label = f"{t.name} {t.dtype}"
        seconds = t.seconds_per_epoch
        print(
            f"{label:<24}{seconds:>9.3f}{seconds / floor:>9.2f}{100 * floor / seconds:>8.0f}%"
            f"{t.final_train_loss:>12.4f}{t.full_data_loss:>11.4f}"
        )
        for note in t.notes:
            print(f"{'':<4}{note}")
    print()
    for row in ratios(timings):
        print(f"{row['other']} / {row['steep']}: {row['speedup']:.2f}")
    print("(seconds per epoch divided; above 1 means the steep run on the right is faster)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="BLAS and PyTorch thread count for every trainer (default: the usable CPUs)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per trainer; the best counts"
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed run")
    parser.add_argument("--n-samples", type=int, default=20_000, help="training samples")
    parser.add_argument(
        "--only",
        choices=["steep", "scikit-learn", "pytorch"],
        action="append",
        help="run only this trainer (repeatable); the floor is always measured",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    for name in ("threads", "repeat", "epochs", "n_samples"):
        if getattr(args, name) < 1:
            option = "--" + name.replace("_", "-")
            parser.error(f"{option} must be at least 1, got {getattr(args, name)}")
    return args


def import_anchors(selected: list[str], notes: list[str]) -> list[str]:
    """Import the anchors that are installed and return the names of those to run.

    Importing loads their BLAS and OpenMP libraries, which must happen before
    ``threadpool_limits`` so that the limit reaches them too.
    """
    runnable = []
    for name in selected:
        module = {"steep": "core", "scikit-learn": "sklearn.neural_network", "pytorch": "torch"}
        try:
            __import__(module[name])
        except ImportError:
            notes.append(f"{name} is not installed; its runs are skipped")
            continue
        runnable.append(name)
    return runnable


def run_trainers(runnable: list[str], workload: Workload) -> list[Timing]:
    x64, y = make_blobs(workload.n_samples)
    x32 = x64.astype(np.float32)
    timings = []
    if "steep" in runnable:
        timings.append(bench_steep(x32, y, "float32", workload))
        timings.append(bench_steep(x64, y, "float64", workload))
    if "scikit-learn" in runnable:
        timings.append(bench_sklearn(x32, y, "float32", workload))
        timings.append(bench_sklearn(x64, y, "float64", workload))
    if "pytorch" in runnable:
        timings.append(bench_pytorch(x32, y, workload))
    return timings


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workload = Workload(args.n_samples, args.epochs, args.threads, args.repeat)
    selected = args.only or ["steep", "scikit-learn", "pytorch"]
    notes: list[str] = []
    runnable = import_anchors(selected, notes)
    with threadpool_limits(args.threads):
        machine = describe_machine(args.threads)
        floor = floor_seconds_per_epoch(workload)
        timings = run_trainers(runnable, workload)
    machine["load_average_after"] = os.getloadavg()[0]

    if args.json:
        report = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine,
            "workload": asdict(workload),
            "floor_seconds_per_epoch": floor,
            "results": [
                {
                    **asdict(t),
                    "seconds_per_epoch": t.seconds_per_epoch,
                    "x_floor": t.seconds_per_epoch / floor,
                }
                for t in timings
            ],
            "ratios": ratios(timings),
            "notes": notes,
        }
        print(json.dumps(report, indent=2))
        return
    for note in notes:
        print(note)
    print_machine(machine, workload)
    print()
    print_timings(floor, timings)


if __name__ == "__main__":
    main()
