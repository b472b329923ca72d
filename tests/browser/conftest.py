"""Fixtures for the dashboard tests: a real steep service and a headless Chromium.

- ``service``: ``steep serve`` (API, one worker and the reaper, SQLite files in a
  temporary folder) on a free port of 127.0.0.1, shared by every test of the
  session and stopped with SIGINT at the end. It writes history every 0.25 s,
  so live charts grow several times while a short job runs.
- ``browser``: Debian's Chromium at /usr/bin/chromium, driven by Playwright, with
  a fresh temporary profile and its background networking off.
- ``keyed_service``: a second ``steep serve`` that requires an API key on every
  request (``STEEP_REQUIRE_KEYS=true``), with the settings to create keys in its
  database and the path of its log.
- ``open_page(path, ...)``: opens ``path`` of the service (or of ``base_url``) in a
  new browser context and returns a ``WatchedPage``, which records console messages,
  every request URL and Content-Security-Policy violations.

The tests skip, with the reason, when Chromium or the playwright package is missing.
CI installs Chromium with apt-get; ``playwright install`` is never needed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from services.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
SERVICE_START_SECONDS = 60.0

SKIP_REASON = (
    f"the dashboard tests need Chromium at {CHROMIUM}; install it with "
    "`apt-get install chromium` (CI does)"
)


@dataclass
class WatchedPage:
    """A browser page with the console errors and request URLs seen since it opened."""

    page: Any
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    console_messages: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def goto(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as ``artifacts/screenshots/<name>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def policy_violations(self) -> list[str]:
        """Return the Content-Security-Policy violations the page reported so far."""
        violations: list[str] = self.page.evaluate("() => window.__policyViolations || []")
        return violations

    def off_loopback_requests(self) -> list[str]:
        """Return the URLs of requests that went anywhere but this machine."""
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob")
            and urlsplit(url).hostname not in LOOPBACK_HOSTS
        ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _service_environment() -> dict[str, str]:
    """This environment without STEEP_* values other tests exported, plus a fast flush."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("STEEP_")
    }
    environment["STEEP_FLUSH_INTERVAL_SECONDS"] = "0.25"
    return environment


@contextmanager
def _running_service(folder: Path, environment: dict[str, str]) -> Iterator[str]:
    """Run ``steep serve`` on a free loopback port with its data in ``folder``; yield its
    base URL. Its output goes to ``folder / "serve.log"``."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-c",
        "from services.cli import main; main()",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(folder / "data"),
    ]
    log_path = folder / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVICE_START_SECONDS
        while not _healthy(base_url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"steep serve did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base_url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``steep serve`` on a free loopback port; yield its base URL."""
    folder = tmp_path_factory.mktemp("dashboard-service")
    with _running_service(folder, _service_environment()) as base_url:
        yield base_url


@dataclass(frozen=True)
class KeyedService:
    """A service that requires an API key on every request, and where its data lives."""

    base_url: str
    settings: Settings
    log_path: Path


@pytest.fixture(scope="session")
def keyed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedService]:
    """Start ``steep serve`` with ``STEEP_REQUIRE_KEYS=true``. Create keys with
    ``services.keys.create_key(keyed_service.settings, tenant)``."""
    folder = tmp_path_factory.mktemp("keyed-service")
    environment = {**_service_environment(), "STEEP_REQUIRE_KEYS": "true"}
    with _running_service(folder, environment) as base_url:
        settings = Settings(data_dir=folder / "data", require_keys=True)
        yield KeyedService(base_url, settings, folder / "serve.log")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(SKIP_REASON)
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the dashboard tests need the playwright package"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


OpenPage = Callable[..., WatchedPage]

# Runs before the page's own scripts, so it records violations from the first request on.
RECORD_POLICY_VIOLATIONS = """
window.__policyViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__policyViolations.push(`${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""


@pytest.fixture
def open_page(browser: Any, service: str) -> Iterator[OpenPage]:
    """Return a function that opens a service path in a fresh context and watches it."""
    contexts = []

    def open_watched(
        path: str,
        *,
        width: int = 1280,
        height: int = 900,
        timezone: str = "Europe/Berlin",
        base_url: str | None = None,
    ) -> WatchedPage:
        context = browser.new_context(
            viewport={"width": width, "height": height}, timezone_id=timezone, locale="en-GB"
        )
        context.add_init_script(RECORD_POLICY_VIOLATIONS)
        contexts.append(context)
        watched = WatchedPage(context.new_page(), base_url or service)

        def record_request(request: Any) -> None:
            watched.requests.append(request.url)
            watched.headers[request.url] = request.headers

        def record_console(message: Any) -> None:
            watched.console_messages.append(message.text)
            if message.type == "error":
                watched.console_errors.append(message.text)

        watched.page.on("request", record_request)
        watched.page.on("console", record_console)
        watched.page.on("pageerror", lambda error: watched.console_errors.append(str(error)))
        watched.goto(path)
        return watched

    yield open_watched
    for context in contexts:
        context.close()
