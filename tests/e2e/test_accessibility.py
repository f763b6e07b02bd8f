"""Every page checked with axe-core (no serious or critical WCAG 2 A/AA violation), in English and German,
before and after joining; keyboard focus is visible; screenshots at a desktop and a phone size."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import DESKTOP, MEDIA_WAIT_MS, PHONE, WAIT_MS, RoomPage
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db

PAGES = {"conference": "/conference/", "video-chat": "/video-chat/", "screen-sharing": "/screen-sharing/"}


def shoot(page: RoomPage, name: str) -> None:
    """A desktop and a phone screenshot of the page as it is."""
    page.page.set_viewport_size(DESKTOP)
    page.screenshot(f"{name}-desktop")
    page.page.set_viewport_size(PHONE)
    page.screenshot(f"{name}-phone")
    assert page.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], f"{name} overflows a phone"
    page.page.set_viewport_size(DESKTOP)


def test_index_is_accessible(open_page: Callable[..., RoomPage], axe_source: str) -> None:
    """The index has no serious or critical axe violation."""
    home = open_page("/", viewport=DESKTOP)
    assert home.axe_violations(axe_source) == []
    shoot(home, "a11y-index")
    home.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_room_pages_are_accessible_before_and_in_a_call(
    name: str, open_page: Callable[..., RoomPage], axe_source: str
) -> None:
    """Each room page: axe-clean before joining and in a call with a second person; screenshots of both."""
    first = open_page(PAGES[name], viewport=DESKTOP)
    expect(first.page.locator("#previewDisplay video")).to_have_count(1, timeout=WAIT_MS)
    assert first.axe_violations(axe_source) == []
    shoot(first, f"a11y-{name}-prejoin")
    second = open_page(first.invite(), viewport=DESKTOP)
    first.join("ada")
    second.join("grace")
    first.send("hello grace")
    first.page.locator("#statsCard summary").click()
    status = "participant1Status" if name == "conference" else "remoteStatus"
    expect(first.el(status)).to_have_text("PLAYING", timeout=MEDIA_WAIT_MS)
    # The stats panel fills on its first tick: the screenshots then show a row, not an empty table.
    expect(first.page.locator("#statsBody tr").first).to_be_visible(timeout=MEDIA_WAIT_MS)
    violations = first.axe_violations(axe_source)
    assert violations == [], "\n".join(violations)
    shoot(first, f"a11y-{name}-in-call")
    second.leave()
    first.leave()
    second.close()
    first.close()


def test_german_by_parameter_and_by_browser_language(
    open_page: Callable[..., RoomPage], browser: Browser, server: DaphneServer, axe_source: str
) -> None:
    """?lang=de and a German browser both get German pages (html lang too), axe-clean."""
    page = open_page("/conference/?lang=de", viewport=DESKTOP)
    expect(page.page.locator("html")).to_have_attribute("lang", "de")
    expect(page.page.locator("h1.page-title")).to_contain_text("Konferenz")
    expect(page.el("joinBtn")).to_have_text("Beitreten")
    expect(page.el("status")).to_have_text("GETRENNT")
    assert page.axe_violations(axe_source) == []
    page.el("joinBtn").click()
    expect(page.el("failedInfo")).to_have_text("Bitte zuerst einen Namen eingeben.")
    shoot(page, "a11y-conference-de")
    page.close()
    context = browser.new_context(locale="de-DE", viewport=DESKTOP)
    try:
        german = context.new_page()
        german.goto(server.http_url + "/video-chat/")
        expect(german.locator("h1.page-title")).to_contain_text("Videochat zu zweit")
        expect(german.locator("html")).to_have_attribute("lang", "de")
    finally:
        context.close()


def test_keyboard_reaches_the_controls_with_visible_focus(open_page: Callable[..., RoomPage]) -> None:
    """Tab goes from the skip link through the page to Join; the focused control shows an outline."""
    page = open_page("/conference/", viewport=DESKTOP)
    seen = []
    for _ in range(20):
        page.page.keyboard.press("Tab")
        focused = page.page.evaluate(
            """() => {
                const e = document.activeElement;
                const s = getComputedStyle(e);
                return {id: e.id, cls: e.className, outline: s.outlineStyle, width: parseFloat(s.outlineWidth)};
            }"""
        )
        seen.append(focused["id"] or focused["cls"])
        assert focused["outline"] != "none" and focused["width"] >= 2, focused
        if focused["id"] == "joinBtn":
            break
    assert seen[0] == "skip-link" and "login" in seen and seen[-1] == "joinBtn", seen
    page.page.keyboard.press("Enter")
    expect(page.el("failedInfo")).to_have_text("Enter a login first.")
    # The reconnect banner (shown by the page when the SDK reports that it reconnects) is a status region.
    expect(page.el("reconnectBanner")).to_be_hidden()
    page.page.evaluate("window.conferencePage.setReconnecting(true)")
    expect(page.page.get_by_role("status").filter(has_text="reconnecting")).to_be_visible()
    page.page.evaluate("window.conferencePage.setReconnecting(false)")
    expect(page.el("reconnectBanner")).to_be_hidden()
    page.close()
