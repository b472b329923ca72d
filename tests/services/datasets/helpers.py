"""Data files and requests shared by the dataset tests."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.settings import Settings
from services.store.db import session_scope
from services.store.models import DatasetBlob, DatasetRow

CHURN_COLUMNS = ["customer_age", "city", "plan", "monthly_spend", "tenure_months"]
CITIES = ["Bergen", "Oslo", "Stavanger", "Trondheim"]
PLANS = ["basic", "pro", "team"]


def churn_rows(n_rows: int = 200, seed: int = 7) -> list[list[Any]]:
    """Customers of a subscription service with a learnable churn label.

    A customer churns ("yes") on the basic plan within 30 months, or in Stavanger
    when spending more than 60 a month; every other customer stays ("no").
    """
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_rows):
        age = int(rng.integers(18, 75))
        city = CITIES[rng.integers(len(CITIES))]
        plan = PLANS[rng.integers(len(PLANS))]
        spend = round(float(rng.uniform(10, 120)), 2)
        tenure = int(rng.integers(1, 60))
        churns = (plan == "basic" and tenure < 30) or (city == "Stavanger" and spend > 60)
        rows.append([age, city, plan, spend, tenure, "yes" if churns else "no"])
    return rows


def churn_csv(rows: list[list[Any]] | None = None) -> bytes:
    """The churn rows as CSV text with a header, churn last."""
    lines = [",".join([*CHURN_COLUMNS, "churn"])]
    lines += [",".join(str(value) for value in row) for row in rows or churn_rows()]
    return ("\n".join(lines) + "\n").encode()


def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def upload(client: TestClient, filename: str, content: bytes, **fields: str) -> Any:
    """POST a file to /v1/datasets and return the response."""
    return client.post("/v1/datasets", files={"file": (filename, content)}, data=fields)


def count_rows(settings: Settings) -> tuple[int, int]:
    """Count the rows of the datasets and dataset_blobs tables."""
    with session_scope(settings.resolved_database_url, write=False) as session:
        datasets = session.scalar(select(func.count()).select_from(DatasetRow))
        blobs = session.scalar(select(func.count()).select_from(DatasetBlob))
    return int(datasets or 0), int(blobs or 0)


def churn_spec(dataset_id: str, **training: Any) -> dict[str, Any]:
    """A small MLP that learns the churn rule in a few seconds."""
    return {
        "dataset": dataset_id,
        "model": {
            "layers": [
                {"type": "dense", "units": 16, "activation": "relu"},
                {"type": "dense", "units": 2},
            ]
        },
        "optimizer": {"type": "adam", "lr": 0.02},
        "training": {
            "epochs": 60,
            "batch_size": 16,
            "validation_split": 0.2,
            "seed": 0,
            **training,
        },
        "preprocessing": {"standardize": True},
    }
