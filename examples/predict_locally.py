"""Download a trained job's parameters and predict on digits locally, without the service.

    python examples/predict_locally.py [JOB_ID] [--url URL]

Without JOB_ID, the best job of the experiment "digits-sweep" (examples/sweep_digits.py)
is used. The parameter file is saved as ``JOB_ID.npz``; after that, only the file
is needed: ``core.paramfile.load_model`` rebuilds the model from it.
"""

from __future__ import annotations

import argparse

import numpy as np

import core
from core.paramfile import load_model
from services.client import Client

EXPERIMENT = "digits-sweep"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_id", nargs="?", help=f"default: the best job of {EXPERIMENT}")
    parser.add_argument(
        "--url", default=None, help="the steep service; default: from STEEP_PORT and STEEP_HOST"
    )
    args = parser.parse_args()

    with Client(args.url) as steep:
        job_id = args.job_id or best_job_id(steep)
        path = steep.download_weights(job_id, f"{job_id}.npz")
    print(f"saved the parameters of job {job_id} to {path}")

    # From here on, the service is not needed.
    model = load_model(path)
    digits = core.load_builtin("digits")
    predictions = model.predict(digits.x)
    labels = np.asarray(digits.classes, dtype=object)[digits.y]
    accuracy = float(np.mean(predictions == labels))
    print(f"accuracy on all {len(labels)} digits (training data included): {accuracy:.3f}")
    print(f"first ten predictions: {list(predictions[:10])}")


def best_job_id(steep: Client) -> str:
    """Return the best job of EXPERIMENT, as GET /v1/experiments ranks it."""
    cursor = None
    while True:
        page = steep.list_experiments(limit=500, cursor=cursor)
        for experiment in page.items:
            if experiment.name == EXPERIMENT and experiment.best is not None:
                return experiment.best.job_id
        if page.next_cursor is None:
            raise SystemExit(f"no succeeded job in experiment {EXPERIMENT!r}; run sweep_digits.py")
        cursor = page.next_cursor


if __name__ == "__main__":
    main()
