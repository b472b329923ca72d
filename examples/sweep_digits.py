"""Run a learning-rate and width sweep on the digits dataset and print its leaderboard.

Start a service first (``steep serve``), then run:

    python examples/sweep_digits.py [--url URL]

The sweep is ``examples/sweep_digits.json``: a 3x2 grid over ``optimizer.lr`` and the
first layer's units, two trials at a time, with the median stopping rule.
``steep sweep examples/sweep_digits.json --wait`` runs the same sweep from the shell.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from services.client import Client, Sweep

SWEEP_FILE = Path(__file__).with_name("sweep_digits.json")


class CountsPrinter:
    """Print the sweep's trial counts whenever they change."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def __call__(self, sweep: Sweep) -> None:
        if sweep.counts != self.last:
            counts = ", ".join(f"{n} {status}" for status, n in sorted(sweep.counts.items()))
            print(f"  {sweep.status}: {counts}", flush=True)
            self.last = sweep.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=None, help="the steep service; default: from STEEP_PORT and STEEP_HOST"
    )
    args = parser.parse_args()
    body = json.loads(SWEEP_FILE.read_text())

    with Client(args.url) as steep:
        sweep = steep.submit_sweep(body)
        print(f"sweep {sweep.id}: {sweep.n_trials} trials, {sweep.max_parallel} at a time")
        sweep = steep.wait_sweep(sweep.id, on_update=CountsPrinter())

    metric = sweep.objective["metric"]
    print(f"\nsweep {sweep.status}; leaderboard by {sweep.objective['mode']} {metric}:")
    for entry in sweep.leaderboard:
        lr = entry.parameters["optimizer.lr"]
        units = entry.parameters["model.layers.0.units"]
        result = f"{metric}={entry.value:.4f}"
        print(f"  {entry.rank}. lr={lr:<8g} units={units:<4} {result}  job {entry.job_id}")
    for trial in sweep.trials:
        if trial.stop_reason == "early_stopped":
            print(f"  trial {trial.index} stopped early: {trial.stop_message}")
    if sweep.best is not None:
        print(
            f"\nbest job: {sweep.best.job_id}; try examples/predict_locally.py {sweep.best.job_id}"
        )


if __name__ == "__main__":
    main()
