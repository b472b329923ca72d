"""Fixtures for the client and CLI tests: a live service for this test's mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.settings import Settings
from tests.services.client.live import LiveService, live_service


@pytest.fixture
def service(settings: Settings) -> Iterator[LiveService]:
    """The API on 127.0.0.1, three inline workers and the sweeper, on this mode's database."""
    with live_service(settings) as running:
        yield running
