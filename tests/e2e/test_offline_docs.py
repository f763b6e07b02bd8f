"""Swagger UI and ReDoc render in Chromium with no network but the server's own (production static files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.e2e.conftest import WAIT_MS
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def static_server(django_db_setup: Any, django_db_blocker: Any, collected_static: Path) -> Iterator[DaphneServer]:
    """A daphne process serving collectstatic's output, as in production."""
    with django_db_blocker.unblock(), DaphneServer(
        {"STATIC_ROOT": str(collected_static), "STATIC_MANIFEST": "true", "LOG_LEVEL": "WARNING"}
    ) as srv:
        yield srv


@pytest.fixture
def offline_page(browser: Browser, static_server: DaphneServer) -> Iterator[tuple[Page, list[str]]]:
    """A page whose requests to any other host than the server are refused and listed."""
    own = urlparse(static_server.http_url).netloc
    foreign: list[str] = []

    def gate(route: Route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).netloc == own:
            route.continue_()
        else:
            foreign.append(url)
            route.abort()

    context = browser.new_context()
    try:
        page = context.new_page()
        page.route("**/*", gate)
        yield page, foreign
    finally:
        context.close()


def test_swagger_ui_renders_offline(offline_page: tuple[Page, list[str]], static_server: DaphneServer) -> None:
    """/api/docs/ shows the API's operations with nothing fetched from another host."""
    page, foreign = offline_page
    page.goto(static_server.http_url + "/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Conference Room API", timeout=WAIT_MS)
    expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT_MS)
    assert page.locator(".opblock").count() > 5
    page.wait_for_load_state("networkidle", timeout=WAIT_MS)
    assert foreign == []


def test_redoc_renders_offline(offline_page: tuple[Page, list[str]], static_server: DaphneServer) -> None:
    """/api/redoc/ shows the API's title and operations with nothing fetched from another host."""
    page, foreign = offline_page
    page.goto(static_server.http_url + "/api/redoc/")
    expect(page.locator("h1").first).to_contain_text("Conference Room API", timeout=WAIT_MS)
    expect(page.locator("[data-section-id^='tag/']").first).to_be_attached(timeout=WAIT_MS)
    page.wait_for_load_state("networkidle", timeout=WAIT_MS)
    assert foreign == []


@pytest.mark.parametrize("path", ["/", "/conference/", "/video-chat/", "/screen-sharing/"])
def test_pages_load_nothing_from_other_hosts(
    offline_page: tuple[Page, list[str]], static_server: DaphneServer, path: str
) -> None:
    """The pages and their module scripts load from the server alone."""
    page, foreign = offline_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(static_server.http_url + path)
    page.wait_for_load_state("networkidle", timeout=WAIT_MS)
    assert foreign == [] and errors == []
