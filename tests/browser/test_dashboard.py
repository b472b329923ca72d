"""The dashboard as a user meets it: a real service, real jobs, and Chromium.

The tests share one service (see ``conftest.py``) and run in file order, so the first
one finds the service before any job exists. Each test saves screenshots under
``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.browser.conftest import CHROMIUM, SKIP_REASON, OpenPage

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)
expect = pytest.importorskip(
    "playwright.sync_api", reason="the dashboard tests need the playwright package"
).expect

T = TypeVar("T")

# The one-weight example: y_hat = w * x with x = 2, y = 10 and w = 0.5.
TEA_SPEC: dict[str, Any] = {
    "name": "one-weight",
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

# About 5 s of training on one core: long enough to watch the curve grow.
# Enough epochs that the job still runs when the page first draws it, on a fast machine too.
LIVE_EPOCHS = 300
DIGITS_SPEC: dict[str, Any] = {
    "name": "digits-live",
    "experiment": "digits",
    "dataset": "builtin:digits",
    "model": {
        "layers": [
            {"type": "dense", "units": 64, "activation": "relu"},
            {"type": "dropout", "rate": 0.1},
            {"type": "dense", "units": 10},
        ]
    },
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.002},
    "training": {"epochs": LIVE_EPOCHS, "batch_size": 8, "seed": 0, "validation_split": 0.2},
    "preprocessing": {"standardize": True},
}

IRIS_SPEC: dict[str, Any] = {
    "experiment": "compare",
    "tags": {"suite": "compare"},
    "dataset": "builtin:iris",
    "model": {
        "layers": [
            {"type": "dense", "units": 8, "activation": "tanh"},
            {"type": "dense", "units": 3},
        ]
    },
    "optimizer": {"type": "adam", "lr": 0.02},
    "training": {"epochs": 20, "batch_size": 16, "validation_split": 0.2, "seed": 1},
    "preprocessing": {"standardize": True},
}

POINTS_SCRIPT = """(series) => {
  const path = document.querySelector(`.chart .series[data-series="${series}"] path.line`);
  return path ? (path.getAttribute("d").match(/[ML]/g) || []).length : 0;
}"""


def submit(service: str, spec: dict[str, Any]) -> str:
    response = httpx.post(f"{service}/v1/jobs", json=spec, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def read_job(service: str, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = httpx.get(f"{service}/v1/jobs/{job_id}", timeout=10).json()
    return job


def wait_until(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Call ``probe`` until it returns a value other than None; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def wait_for_status(service: str, job_ids: list[str], status: str, timeout: float = 60) -> None:
    wait_until(
        lambda: True if all(read_job(service, i)["status"] == status for i in job_ids) else None,
        timeout,
        f"jobs {job_ids} to be {status}",
    )


def tea_spec(weight: float, experiment: str, team: str) -> dict[str, Any]:
    """The one-weight spec starting at ``weight``; its loss is (2 * weight - 10) ** 2."""
    layer = {**TEA_SPEC["model"]["layers"][0], "init": {"type": "constant", "value": weight}}
    return {
        **TEA_SPEC,
        "name": f"tea-{weight:g}",
        "experiment": experiment,
        "tags": {"suite": "filters", "team": team},
        "model": {"layers": [layer]},
    }


def table_column(page: Any, label: str) -> list[str]:
    """Return the text of one column of the jobs table, top to bottom."""
    cells = page.locator(f'.jobs-table tbody td[data-label="{label}"]')
    return [text.strip() for text in cells.all_inner_texts()]


def status_text(page: Any) -> str:
    return str(page.locator(".job-state .badge").inner_text())


# Tests ----------------------------------------------------------------------------


def test_jobs_view_empty_state(open_page: OpenPage) -> None:
    """Before any job exists, the jobs view shows an empty state with a way to submit one."""
    watched = open_page("/")

    expect(watched.page.get_by_role("heading", name="No jobs yet")).to_be_visible()
    expect(watched.page.get_by_text("steep submit examples/iris.json")).to_be_visible()
    watched.screenshot("jobs-empty")
    assert watched.console_errors == []
    assert watched.off_loopback_requests() == []


def test_job_view_curve_grows_live(open_page: OpenPage, service: str) -> None:
    """While a job runs its loss curve gains points; at the end the heatmap has one row per
    layer and one column per epoch."""
    job_id = submit(service, DIGITS_SPEC)
    watched = open_page(f"/#/jobs/{job_id}")
    page = watched.page

    try:
        first = wait_until(
            lambda: n if (n := page.evaluate(POINTS_SCRIPT, "train_loss")) > 0 else None,
            timeout=60,
            what="the first epochs on the chart",
        )
    except AssertionError as error:
        job = read_job(service, job_id)
        raise AssertionError(
            f"{error}; the job is {job['status']} at epoch {job['progress']['epoch']}, "
            f"console errors: {watched.console_errors}"
        ) from error
    running_status = status_text(page)
    watched.screenshot("job-running")
    later = wait_until(
        lambda: n if (n := page.evaluate(POINTS_SCRIPT, "train_loss")) > first else None,
        timeout=20,
        what=f"more than {first} points on the chart",
    )
    expect(page.locator(".job-state .badge")).to_contain_text("succeeded", timeout=60_000)
    final = page.evaluate(POINTS_SCRIPT, "train_loss")
    watched.screenshot("job-finished")

    assert running_status.startswith("running"), running_status
    assert 0 < first < later
    assert first < LIVE_EPOCHS
    assert final == LIVE_EPOCHS
    assert page.evaluate(POINTS_SCRIPT, "val_loss") == LIVE_EPOCHS
    rows = page.locator(".heatmap-row")
    assert rows.count() == 2
    assert [rows.nth(i).get_attribute("data-layer") for i in range(2)] == ["dense_0", "dense_2"]
    for i in range(2):
        epochs = (
            rows.nth(i)
            .locator("rect.cell")
            .evaluate_all("cells => cells.map(cell => Number(cell.dataset.epoch))")
        )
        assert epochs == list(range(1, LIVE_EPOCHS + 1))
    stream_ids = [
        headers.get("last-event-id", "")
        for url, headers in watched.headers.items()
        if url.endswith(f"/v1/jobs/{job_id}/events")
    ]
    assert stream_ids and all(re.fullmatch(r"\d+:0", value) for value in stream_ids), stream_ids
    assert watched.console_errors == []
    assert watched.off_loopback_requests() == []


def test_step_trace_one_weight(open_page: OpenPage, service: str) -> None:
    """The one-weight job's trace shows y_hat 1, loss 81, dL/dy_hat -18, local gradient 2,
    dL/dw -36 and w going from 0.5 to 0.86; times are in the browser's time zone."""
    job_id = submit(service, TEA_SPEC)
    watched = open_page(f"/#/jobs/{job_id}", timezone="Asia/Tokyo")
    page = watched.page

    page.get_by_text("Step trace: the first training step").click()
    trace = page.locator(".trace")
    expect(trace).to_be_visible()

    def value(key: str) -> str:
        return str(trace.locator(f'[data-trace="{key}"]').inner_text())

    assert value("prediction") == "1"
    assert value("loss") == "81"
    assert value("grad-output") == "-18"
    assert value("local-gradient:dense_0") == "2"
    assert value("grad:dense_0.weight") == "-36"
    assert value("before:dense_0.weight") == "0.5"
    assert value("after:dense_0.weight") == "0.86"
    expect(page.locator(".chain-rule")).to_contain_text("0.5 − 0.01 × (-36) = 0.86")
    watched.screenshot("trace-one-weight")

    created = datetime.fromisoformat(read_job(service, job_id)["created_at"])
    tokyo = created.astimezone(ZoneInfo("Asia/Tokyo"))
    expected_created = f"{tokyo.day} {tokyo:%b %Y, %H:%M:%S}"
    assert page.locator("#time-zone").inner_text() == "Asia/Tokyo"
    created_item = page.locator(".job-summary div", has=page.locator("dt", has_text="Created"))
    assert created_item.locator("dd").inner_text() == expected_created
    assert watched.console_errors == []
    assert watched.off_loopback_requests() == []


def test_jobs_view_filters_sort_and_cancel(open_page: OpenPage, service: str) -> None:
    """Filters by experiment, tag and status keep the matching rows, and a column header
    sorts by its column. Pages follow the cursor, and the Cancel button stops a running job."""
    weights = {
        0.5: ("filters-alpha", "a"),
        1.0: ("filters-beta", "a"),
        2.0: ("filters-alpha", "b"),
        3.0: ("filters-beta", "b"),
    }
    tea_ids = [
        submit(service, tea_spec(w, experiment, team)) for w, (experiment, team) in weights.items()
    ]
    long_spec = {
        **DIGITS_SPEC,
        "name": "to-cancel",
        "experiment": "filters-long",
        "tags": {"suite": "filters"},
    }
    long_spec["training"] = {**DIGITS_SPEC["training"], "epochs": 5000}
    long_id = submit(service, long_spec)
    wait_for_status(service, tea_ids, "succeeded")
    watched = open_page("/#/jobs?tag=suite:filters")
    page = watched.page
    expect(page.locator(".jobs-table tbody tr")).to_have_count(5)

    page.get_by_label("Experiment").fill("filters-alpha")
    page.get_by_label("Experiment").press("Enter")
    expect(page.locator(".jobs-table tbody tr")).to_have_count(2)
    assert table_column(page, "Experiment") == ["filters-alpha", "filters-alpha"]
    assert "experiment=filters-alpha" in page.url
    watched.screenshot("jobs-filtered")

    page.get_by_role("link", name="Clear", exact=True).click()
    page.get_by_label("Tag").fill("team:b")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".jobs-table tbody tr")).to_have_count(2)
    assert sorted(cell.split()[0] for cell in table_column(page, "Job")) == ["tea-2", "tea-3"]
    assert all("team: b" in tags for tags in table_column(page, "Tags"))

    watched.goto("/#/jobs?tag=suite:filters")
    page.get_by_label("Status").select_option("succeeded")
    expect(page.locator(".jobs-table tbody tr")).to_have_count(4)
    assert set(table_column(page, "Status")) == {"succeeded"}

    page.get_by_role("button", name="Train loss").click()
    expect(page.locator('th[aria-sort="ascending"]')).to_contain_text("Train loss")
    assert table_column(page, "Train loss") == ["16", "36", "64", "81"]
    assert "sort=train_loss" in page.url
    page.get_by_role("button", name="Train loss").focus()
    page.keyboard.press("Enter")
    expect(page.locator('th[aria-sort="descending"]')).to_contain_text("Train loss")
    assert table_column(page, "Train loss") == ["81", "64", "36", "16"]
    watched.screenshot("jobs-sorted")

    watched.goto("/#/jobs?tag=suite:filters&status=succeeded&sort=train_loss&limit=2")
    expect(page.locator(".jobs-table tbody tr")).to_have_count(2)
    assert table_column(page, "Train loss") == ["16", "36"]
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("page 2")).to_be_visible()
    assert table_column(page, "Train loss") == ["64", "81"]
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    page.get_by_role("button", name="Previous").click()
    expect(page.get_by_text("page 1")).to_be_visible()
    assert table_column(page, "Train loss") == ["16", "36"]

    watched.goto(f"/#/jobs/{long_id}")
    expect(page.locator(".job-state .badge")).to_contain_text("running", timeout=30_000)
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator(".job-state .badge")).to_contain_text("cancelled", timeout=30_000)
    watched.goto("/#/jobs?tag=suite:filters&status=cancelled")
    expect(page.locator(".jobs-table tbody tr")).to_have_count(1)
    assert page.locator(".jobs-table tbody tr").get_attribute("data-job-id") == long_id
    assert watched.console_errors == []
    assert watched.off_loopback_requests() == []


def test_compare_view_overlays_curves(open_page: OpenPage, service: str) -> None:
    """Ticking two jobs and choosing Compare draws one curve per job on one chart."""
    ids = [
        submit(
            service, {**IRIS_SPEC, "name": f"iris-lr-{lr}", "optimizer": {"type": "adam", "lr": lr}}
        )
        for lr in (0.02, 0.002)
    ]
    wait_for_status(service, ids, "succeeded")
    watched = open_page("/#/jobs?tag=suite:compare")
    page = watched.page

    for name in ("iris-lr-0.02", "iris-lr-0.002"):
        page.get_by_label(f"Compare {name}", exact=True).check()
    page.get_by_role("link", name="Compare 2 selected").click()
    expect(page.locator(".chart .series")).to_have_count(2)

    assert page.url.split("#", 1)[1].startswith("/compare?ids=")
    for job_id in ids:
        assert page.evaluate(POINTS_SCRIPT, job_id) == 20
    expect(page.locator(".compare-table tbody tr")).to_have_count(2)
    assert page.locator("#compare-metric").input_value() == "val_loss"
    watched.screenshot("compare")
    assert watched.console_errors == []
    assert watched.off_loopback_requests() == []


def test_error_states_and_narrow_window(open_page: OpenPage) -> None:
    """An unknown job, a service that cannot be reached, and a phone-sized window."""
    watched = open_page("/#/jobs/no-such-job")
    expect(watched.page.get_by_role("heading", name="Job not found")).to_be_visible()
    watched.screenshot("job-not-found")

    down = open_page("/#/compare")
    down.page.route("**/v1/**", lambda route: route.abort())
    down.goto("/#/jobs")
    expect(down.page.get_by_role("heading", name="The service is not reachable")).to_be_visible()
    down.screenshot("service-down")

    narrow = open_page("/#/jobs", width=390, height=844)
    expect(narrow.page.locator(".jobs-table tbody tr").first).to_be_visible()
    narrow.screenshot("jobs-narrow")
    page_width = narrow.page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= 390
    assert narrow.console_errors == []
    assert narrow.off_loopback_requests() == []
