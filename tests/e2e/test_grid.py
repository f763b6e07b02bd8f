"""The Conference page with nine people (one page, eight Python SDK clients): grid, pages, speaker layout,
pin, who is speaking (a tone against silence, from the relay's active speakers), connection quality, the
forwarded layer and the stats panel."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Locator, expect

from tests.e2e.bots import BotCrowd
from tests.e2e.conftest import MEDIA_WAIT_MS, PHONE, RoomPage
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db

ROOM = "grid-nine"
BOTS = [f"bot{n}" for n in range(1, 9)]
SPEAKER = "bot3"


@pytest.fixture(scope="module")
def crowd(server: DaphneServer) -> Iterator[BotCrowd]:
    """Eight Python participants in one room for ten; bot3 sends a tone, the others silence."""
    bots = BotCrowd(server.ws_url, ROOM, BOTS, speakers=(SPEAKER,), max_participants=10)
    bots.start()
    try:
        assert bots.ready.wait(90) and bots.error is None, bots.error
        yield bots
    finally:
        bots.stop()


@pytest.fixture(scope="module")
def nine(crowd: BotCrowd, open_page: Callable[..., RoomPage]) -> RoomPage:
    """The ninth participant: a browser page on the Conference page with ?max=10."""
    page = open_page(f"/conference/?roomName={ROOM}&max=10", viewport={"width": 1280, "height": 800})
    page.join("nina")
    return page


def tile(page: RoomPage, login: str) -> Locator:
    return page.page.locator("#grid .tile-remote").filter(has=page.page.locator(".tile-name", has_text=login))


def test_grid_of_nine_plays_everyone(nine: RoomPage) -> None:
    """Eight remote tiles in three columns, each PLAYING its participant's video."""
    grid = nine.el("grid")
    expect(nine.page.locator("#grid .tile-remote")).to_have_count(8, timeout=MEDIA_WAIT_MS)
    expect(grid).to_have_attribute("data-cols", "3")
    for n in range(1, 9):
        expect(nine.el(f"participant{n}Status")).to_have_text("PLAYING", timeout=MEDIA_WAIT_MS)
    video = nine.wait_video("participant8Display")
    assert (video["width"], video["height"]) == (160, 120)
    boxes = [nine.el(f"participant{n}").bounding_box() for n in range(1, 9)]
    assert len({round(b["x"]) for b in boxes if b}) == 3  # three columns
    expect(nine.page.locator("#people li")).to_have_count(9)
    # The page's own row shows its microphone and camera state, as the others' rows do.
    expect(nine.page.locator("#people li.person-self .flag[data-kind='mic']")).to_have_attribute("data-state", "on")
    expect(nine.page.locator("#people li.person-self .flag[data-kind='cam']")).to_have_attribute("data-state", "on")
    nine.screenshot("conference-nine-desktop")


def test_speaking_highlight_follows_the_tone(nine: RoomPage) -> None:
    """The tile of the participant sending a tone is highlighted; silent participants are not."""
    expect(tile(nine, SPEAKER)).to_have_attribute("data-speaking", "true", timeout=MEDIA_WAIT_MS)
    for login in ("bot1", "bot5", "bot8"):
        expect(tile(nine, login)).to_have_attribute("data-speaking", "false")


SPEAKING_JS = "(login) => window.conferencePage.room.activeSpeakers().some((s) => s.login === login)"


def test_speaking_highlight_follows_the_relays_active_speakers(crowd: BotCrowd, nine: RoomPage) -> None:
    """The relay's ACTIVE_SPEAKERS events drive the highlight: the speaker muting its microphone leaves the
    relay's list and loses the highlight; unmuting brings both back.

    The page joined while the speaker was speaking already: it knows it from the join (the relay reports changes
    only; before the join carried the list, a mute shorter than the relay's staleness left the page unaware)."""
    speaking = SPEAKING_JS
    nine.page.wait_for_function(speaking, arg=SPEAKER, timeout=MEDIA_WAIT_MS)
    crowd.set_audio_muted(SPEAKER, True)
    nine.page.wait_for_function(f"(login) => !({speaking})(login)", arg=SPEAKER, timeout=MEDIA_WAIT_MS)
    expect(tile(nine, SPEAKER)).to_have_attribute("data-speaking", "false", timeout=MEDIA_WAIT_MS)
    crowd.set_audio_muted(SPEAKER, False)
    nine.page.wait_for_function(speaking, arg=SPEAKER, timeout=2 * MEDIA_WAIT_MS)  # a busy relay may be slow
    expect(tile(nine, SPEAKER)).to_have_attribute("data-speaking", "true", timeout=MEDIA_WAIT_MS)
    for login in ("bot1", "bot5", "bot8"):
        expect(tile(nine, login)).to_have_attribute("data-speaking", "false")


def test_speaker_layout_and_pin(nine: RoomPage) -> None:
    """Speaker view puts the speaking tile first and large; a pinned tile takes its place; unpin returns."""
    nine.el("layoutBtn").click()
    expect(nine.el("layoutBtn")).to_have_attribute("aria-pressed", "true")
    speaker = tile(nine, SPEAKER)
    expect(speaker).to_have_class("tile tile-remote occupied featured", timeout=MEDIA_WAIT_MS)
    big = speaker.bounding_box()
    small = tile(nine, "bot1").bounding_box()
    assert big and small and big["width"] > 2 * small["width"]
    nine.screenshot("conference-nine-speaker")
    nine.page.get_by_role("button", name="Pin bot6").click()
    expect(tile(nine, "bot6")).to_have_class("tile tile-remote occupied featured")
    expect(nine.page.locator("#grid .tile.featured")).to_have_count(1)
    nine.page.get_by_role("button", name="Pin bot6").click()
    nine.el("layoutBtn").click()
    expect(nine.page.locator("#grid .tile.featured")).to_have_count(0)


def test_pages_beyond_the_page_size(nine: RoomPage) -> None:
    """With a page size of 5, the grid shows 5 tiles and a pager to the other 3."""
    nine.page.evaluate("() => { const g = window.conferencePage.stage; g.pageSize = 5; g.render(); }")
    expect(nine.page.locator("#grid .tile-remote:visible")).to_have_count(5)
    expect(nine.el("pageInfo")).to_have_text("Page 1 of 2")
    nine.el("nextPage").click()
    expect(nine.page.locator("#grid .tile-remote:visible")).to_have_count(3)
    expect(nine.el("pageInfo")).to_have_text("Page 2 of 2")
    nine.page.evaluate("() => { const g = window.conferencePage.stage; g.pageSize = 25; g.render(); }")
    expect(nine.el("pager")).to_be_hidden()


def test_quality_marks_and_stats_panel(nine: RoomPage) -> None:
    """Every playing tile gets a quality mark, and the stats panel lists codec, resolution and bitrate per stream."""
    for n in range(1, 9):
        expect(nine.page.locator(f"#participant{n} .quality")).to_have_attribute(
            "data-quality", __import__("re").compile("good|fair|poor"), timeout=MEDIA_WAIT_MS
        )
    nine.page.locator("#statsCard summary").click()
    rows = nine.page.locator("#statsBody tr[data-kind='camera']")
    expect(rows).to_have_count(8, timeout=MEDIA_WAIT_MS)
    row = nine.page.locator(f"#statsBody tr[data-who='{SPEAKER}']")
    expect(row.locator("td").nth(0)).to_have_text("VP8")
    expect(row.locator("td").nth(1)).to_have_text("160×120")
    assert int(row.locator("td").nth(3).inner_text()) > 0
    # A one-layer stream (the Python SDK sends no simulcast) is forwarded as its one layer, "high".
    expect(row.locator("td").nth(7)).to_have_text("high")
    expect(nine.page.locator("#participant1 .layer")).to_have_attribute("data-layer", "high")
    nine.screenshot("conference-nine-stats")


def test_grid_on_a_phone(crowd: BotCrowd, nine: RoomPage, open_page: Callable[..., RoomPage]) -> None:
    """On a phone the nine-person grid has two columns and fits the width."""
    phone = open_page(f"/conference/?roomName={ROOM}&max=10", viewport=PHONE, mobile=True)
    phone.join("phil")
    # A late joiner knows who speaks from its join (tests/e2e/test_active_speakers.py checks the join itself; on a
    # loaded machine the relay's list may flap meanwhile, hence the bounded wait).
    phone.page.wait_for_function(SPEAKING_JS, arg=SPEAKER, timeout=MEDIA_WAIT_MS)
    expect(phone.page.locator("#grid .tile-remote")).to_have_count(9, timeout=MEDIA_WAIT_MS)
    expect(tile(phone, SPEAKER)).to_have_attribute("data-speaking", "true", timeout=MEDIA_WAIT_MS)
    expect(phone.el("participant1Status")).to_have_text("PLAYING", timeout=MEDIA_WAIT_MS)
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    xs = {round(phone.el(f"participant{n}").bounding_box()["x"]) for n in range(1, 5)}  # type: ignore[index]
    assert len(xs) == 2
    phone.screenshot("conference-ten-phone")
    phone.leave()
    phone.close()
