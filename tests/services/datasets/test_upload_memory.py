"""Memory of the API process while it receives, parses and stores an upload near the limit."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.services.datasets.conftest import StartServer

UPLOAD_LIMIT = 20 * 2**20
# The peak may grow by this many times the file's size. Parsing keeps 8 bytes per
# cell, the encoded x a little more (one-hot columns), and the compressed NPZ and the
# database driver each hold a copy of the stored bytes.
MAX_PEAK_GROWTH_PER_FILE_BYTE = 6.0

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads VmHWM from /proc, which is Linux only"
)


def _write_csv(path: Path, max_bytes: int) -> int:
    """Write a CSV of numbers, one text column and a 0/1 target, just below ``max_bytes``."""
    rng = np.random.default_rng(0)
    cities = np.array(["Bergen", "Oslo", "Stavanger", "Trondheim"])
    with path.open("w") as file:
        file.write(",".join([*(f"f{i}" for i in range(8)), "city", "y"]) + "\n")
        while file.tell() < max_bytes - 200_000:
            n = 2_000
            numbers = np.round(rng.normal(size=(n, 8)) * 100, 3)
            city = cities[rng.integers(4, size=n)]
            label = rng.integers(2, size=n)
            lines = [
                ",".join(map(str, row)) + f",{c},{y}"
                for row, c, y in zip(numbers.tolist(), city, label, strict=True)
            ]
            file.write("\n".join(lines) + "\n")
    return path.stat().st_size


def _peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{pid}/status has no VmHWM line")


def test_upload_near_limit_memory_bounded(start_server: StartServer, tmp_path: Path) -> None:
    """Uploading a file near the limit raises the server's peak memory by a few file sizes."""
    server = start_server(max_upload_bytes=UPLOAD_LIMIT)
    data = tmp_path / "near-limit.csv"
    size = _write_csv(data, UPLOAD_LIMIT)
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as http:
        warm_up = http.post("/v1/datasets", files={"file": ("w.csv", b"a,y\n1,0\n2,1\n")})
        assert warm_up.status_code == 201, warm_up.text
        before = _peak_rss_bytes(server.pid)

        with data.open("rb") as file:
            response = http.post("/v1/datasets", files={"file": ("near-limit.csv", file)})

    growth = _peak_rss_bytes(server.pid) - before
    print(
        f"\nupload of {size / 2**20:.1f} MiB: peak RSS grew by {growth / 2**20:.1f} MiB "
        f"({growth / size:.2f} x the file) from {before / 2**20:.1f} MiB"
    )
    assert response.status_code == 201, response.text
    assert response.json()["n_features"] == 8 + 4
    assert size > 0.95 * UPLOAD_LIMIT
    assert growth < MAX_PEAK_GROWTH_PER_FILE_BYTE * size
