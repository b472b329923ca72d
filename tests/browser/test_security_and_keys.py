"""The dashboard under its Content-Security-Policy, and against a service that requires keys.

The first tests use the shared keyless service and submit nothing, so the empty
state that ``test_dashboard.py`` checks first is not disturbed. The others use
``keyed_service``, which rejects every request without a valid key with a 401.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.keys import create_key
from tests.browser.conftest import CHROMIUM, SKIP_REASON, KeyedService, OpenPage, WatchedPage
from tests.browser.test_dashboard import TEA_SPEC, wait_until

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)
expect = pytest.importorskip(
    "playwright.sync_api", reason="the dashboard tests need the playwright package"
).expect

WRONG_KEY = "steep_" + "w" * 43
# The bundled folder is named after the Swagger UI release, such as "swagger-ui-4.15.5".


def assert_no_policy_violations(watched: WatchedPage) -> None:
    assert watched.policy_violations() == []
    assert [text for text in watched.console_errors if "Content Security Policy" in text] == []


def test_dashboard_renders_under_policy(open_page: OpenPage) -> None:
    """The dashboard renders under its policy with no violation, and keyless mode shows
    no key form."""
    dashboard = open_page("/")

    expect(dashboard.page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(dashboard.page.locator("dialog.key-dialog")).to_have_count(0)
    expect(dashboard.page.get_by_role("button", name="Forget key")).to_be_hidden()
    assert_no_policy_violations(dashboard)
    assert dashboard.console_errors == []


def test_docs_run_swagger_ui_under_policy(open_page: OpenPage) -> None:
    """Swagger UI's scripts, styles and icons all load under the docs policy."""
    docs = open_page("/docs")

    expect(docs.page.locator("#swagger-ui .swagger-ui").first).to_be_attached()
    docs.page.wait_for_load_state("networkidle")
    assert_no_policy_violations(docs)
    assert docs.off_loopback_requests() == []


def test_docs_render_the_api(open_page: OpenPage) -> None:
    docs = open_page("/docs")

    expect(docs.page.locator(".swagger-ui .info .title")).to_contain_text("steep")
    docs.page.locator(".opblock-summary").first.click()
    expect(docs.page.locator(".opblock-body").first).to_be_visible()
    docs.screenshot("docs-under-policy")
    assert_no_policy_violations(docs)
    assert docs.console_errors == []


def submit_as(service: KeyedService, secret: str, name: str) -> str:
    response = httpx.post(
        f"{service.base_url}/v1/jobs",
        json={**TEA_SPEC, "name": name},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def enter_key(page: Any, secret: str, *, remember: bool = False) -> None:
    dialog = page.locator("dialog.key-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("API key").fill(secret)
    if remember:
        dialog.get_by_label("Remember on this device").check()
    dialog.get_by_role("button", name="Use this key").click()


def assert_key_kept_private(watched: WatchedPage, service: KeyedService, secret: str) -> None:
    """The key went out only in Authorization headers: no URL, title, console line or
    server log line contains it."""
    assert watched.requests
    assert [url for url in watched.requests if secret in url] == []
    assert secret not in watched.page.title()
    assert [text for text in watched.console_messages if secret in text] == []
    assert secret not in service.log_path.read_text(errors="replace")


def test_key_form_wrong_then_right_key(open_page: OpenPage, keyed_service: KeyedService) -> None:
    """The page shows the key form, explains a wrong key with the 401's message, and with
    the right key shows that tenant's jobs only."""
    mine = create_key(keyed_service.settings, "acme").secret
    theirs = create_key(keyed_service.settings, "globex").secret
    job_id = submit_as(keyed_service, mine, "acme-job")
    submit_as(keyed_service, theirs, "globex-job")
    watched = open_page("/", base_url=keyed_service.base_url)
    page = watched.page

    dialog = page.locator("dialog.key-dialog")
    expect(dialog.get_by_role("heading")).to_have_text("This service needs an API key")
    assert dialog.inner_text().count("steep keys create") == 1
    watched.screenshot("key-form")
    enter_key(page, WRONG_KEY)

    expect(dialog.get_by_role("heading")).to_have_text("The API key was not accepted")
    expect(dialog.get_by_role("alert")).to_contain_text("unknown or revoked")
    assert dialog.inner_text().count("steep keys create") == 1
    assert page.evaluate("() => sessionStorage.length + localStorage.length") == 0
    enter_key(page, mine)

    expect(page.locator(".jobs-table tbody tr")).to_have_count(1)
    expect(page.locator(".jobs-table")).to_contain_text("acme-job")
    expect(page.locator(".jobs-table")).not_to_contain_text("globex-job")
    expect(dialog).to_have_count(0)
    expect(page.get_by_role("button", name="Forget key")).to_be_visible()
    sent = [
        headers.get("authorization")
        for url, headers in watched.headers.items()
        if "/v1/jobs" in url
    ]
    assert f"Bearer {mine}" in sent

    page.goto(f"{keyed_service.base_url}/#/jobs/{job_id}")
    expect(page.locator(".job-state .badge")).to_contain_text("succeeded", timeout=60_000)
    with page.expect_download() as download_info:
        page.locator('[data-action="download-json"]').click()
    assert download_info.value.suggested_filename == f"{job_id}.json"
    weights = [url for url in watched.headers if "/weights" in url]
    assert weights
    assert watched.headers[weights[-1]].get("authorization") == f"Bearer {mine}"

    assert_no_policy_violations(watched)
    assert_key_kept_private(watched, keyed_service, mine)
    assert_key_kept_private(watched, keyed_service, WRONG_KEY)


def test_forget_key_and_remember(open_page: OpenPage, keyed_service: KeyedService) -> None:
    """ "Remember on this device" keeps the key in localStorage; "Forget key" removes it
    and the page shows the form again."""
    secret = create_key(keyed_service.settings, "initech").secret
    watched = open_page("/", base_url=keyed_service.base_url)
    page = watched.page

    enter_key(page, secret, remember=True)

    expect(page.get_by_role("heading", name="No jobs yet")).to_be_visible()
    assert page.evaluate("() => localStorage.getItem('steep-api-key')") == secret
    assert page.evaluate("() => sessionStorage.getItem('steep-api-key')") is None

    page.get_by_role("button", name="Forget key").click()

    expect(page.locator("dialog.key-dialog")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length + localStorage.length") == 0
    expect(page.get_by_role("button", name="Forget key")).to_be_hidden()
    wait_until(lambda: True if watched.requests else None, timeout=5, what="any request")
    assert_key_kept_private(watched, keyed_service, secret)
