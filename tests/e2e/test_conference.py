"""The Conference page in real Chromium: three people, video, chat, mute, leave, a full room."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import WAIT_MS, RoomPage

pytestmark = pytest.mark.django_db

LOGINS = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def trio(open_page: Callable[..., RoomPage]) -> dict[str, RoomPage]:
    """Three pages in one room through the first page's invite link, each publishing its fake camera."""
    first = open_page("/conference/")
    invite = first.invite()
    assert "/conference/?roomName=room-" in invite
    pages = {"alice": first, "bob": open_page(invite), "carol": open_page(invite)}
    for login, page in pages.items():
        page.join(login)
    return pages


def _others(login: str) -> list[str]:
    return [x for x in LOGINS if x != login]


def test_invite_link_names_a_random_room(open_page: Callable[..., RoomPage]) -> None:
    """Without ?roomName= the page invents room-xxxxxx; with it, the invite keeps the name."""
    page = open_page("/conference/")
    invite = page.invite()
    assert invite.split("roomName=")[1].startswith("room-") and len(invite.split("roomName=")[1]) == 11
    named = open_page("/conference/?roomName=team-sync")
    assert named.invite().endswith("/conference/?roomName=team-sync")
    expect(named.el("url")).to_have_value(named.page.url.split("/conference/")[0].replace("http", "ws"))
    page.close()
    named.close()


def test_first_joiner_sees_room_is_empty(trio: dict[str, RoomPage]) -> None:
    """The chat log opens with "room is empty", "participants: ..." and "x - joined" lines."""
    assert trio["alice"].chat_line("chat", "room is empty").count() == 1
    expect(trio["alice"].chat_line("bob", "joined")).to_have_count(1)
    expect(trio["alice"].chat_line("carol", "joined")).to_have_count(1)
    assert trio["bob"].chat_line("chat", "participants: alice").count() == 1
    assert trio["carol"].chat_line("chat", "participants: alice,bob").count() == 1


def test_everyone_sees_the_two_others(trio: dict[str, RoomPage]) -> None:
    """Each page plays the two others' cameras: named tiles, PLAYING, a size and rising decoded frames."""
    for login, page in trio.items():
        names = {page.el("participant1Name").inner_text(), page.el("participant2Name").inner_text()}
        assert names == set(_others(login))
        for n in (1, 2):
            expect(page.el(f"participant{n}Status")).to_have_text("PLAYING", timeout=20_000)
            video = page.wait_video(f"participant{n}Display")
            assert video["width"] > 0 and video["height"] > 0 and video["frames"] > 0
    for login, page in trio.items():
        page.screenshot(f"conference-{login}")


def test_chat_reaches_the_others_verbatim(trio: dict[str, RoomPage]) -> None:
    """Cyrillic, CJK and an emoji arrive unchanged on the two other pages, as "HH:MM alice - text"."""
    text = "Привет, 世界! 👋🏽 ok"
    trio["alice"].send(text)
    for login in _others("alice"):
        expect(trio[login].chat_line("alice", text)).to_have_count(1, timeout=WAIT_MS)


def test_private_message_reaches_only_its_recipient(trio: dict[str, RoomPage]) -> None:
    """A message to "carol" shows at carol only; a later public one shows everywhere (so bob is caught up)."""
    secret = "только для Кэрол 🤫"
    trio["bob"].send(secret, to="carol")
    expect(trio["carol"].chat_line("bob", secret)).to_have_count(1, timeout=WAIT_MS)
    public = "after the secret"
    trio["bob"].send(public)
    expect(trio["alice"].chat_line("bob", public)).to_have_count(1, timeout=WAIT_MS)
    assert trio["alice"].chat_line("bob", secret).count() == 0
    trio["carol"].screenshot("conference-chat-carol")


def test_mute_video_shows_on_the_others(trio: dict[str, RoomPage]) -> None:
    """Mute V on carol's page marks her tile as video-muted on alice's and bob's; Unmute V clears it."""
    carol = trio["carol"]
    carol.el("muteVideoBtn").click()
    expect(carol.el("muteVideoBtn")).to_have_text("Unmute V")
    for login in ("alice", "bob"):
        page = trio[login]
        tile = page.page.locator(".tile-remote").filter(has=page.page.locator(".tile-name", has_text="carol"))
        expect(tile).to_have_attribute("data-video-muted", "true", timeout=WAIT_MS)
        expect(tile.locator(".muted-flag")).to_be_visible()
    carol.el("muteVideoBtn").click()
    for login in ("alice", "bob"):
        page = trio[login]
        tile = page.page.locator(".tile-remote").filter(has=page.page.locator(".tile-name", has_text="carol"))
        expect(tile).to_have_attribute("data-video-muted", "false", timeout=WAIT_MS)


def test_fourth_participant_sees_room_full(trio: dict[str, RoomPage], open_page: Callable[..., RoomPage]) -> None:
    """A 4th join through the invite link is refused with "Current room is full."; the others see nothing."""
    dave = open_page(trio["alice"].invite())
    dave.el("login").fill("dave")
    dave.el("joinBtn").click()
    expect(dave.el("failedInfo")).to_have_text("Current room is full.", timeout=WAIT_MS)
    expect(dave.el("joinBtn")).to_have_text("Join")
    assert trio["alice"].chat_line("dave", "joined").count() == 0
    dave.close()


def test_leave_clears_displays_and_logs_left(trio: dict[str, RoomPage]) -> None:
    """Carol leaves: on the others her tile goes away and the log says "carol - left"."""
    trio["carol"].leave()
    expect(trio["carol"].el("status")).to_have_text("DISCONNECTED", timeout=WAIT_MS)
    for login in ("alice", "bob"):
        page = trio[login]
        expect(page.chat_line("carol", "left")).to_have_count(1, timeout=WAIT_MS)
        expect(page.page.locator("#grid .tile-name", has_text="carol")).to_have_count(0)
        expect(page.page.locator("#grid .tile-remote:not(.tile-screen)")).to_have_count(1)
        assert page.page.locator("#grid video").count() == 1


def test_phone_viewport(open_page: Callable[..., RoomPage], trio: dict[str, RoomPage]) -> None:
    """On a phone-sized screen the page fits the width and the controls stay usable."""
    phone = open_page(trio["alice"].invite(), viewport={"width": 390, "height": 844}, mobile=True)
    phone.join("phone")
    expect(phone.el("participant1Status")).to_have_text("PLAYING", timeout=20_000)
    phone.wait_video("participant1Display")
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    for element_id in ("joinBtn", "sendBtn", "muteVideoBtn", "message"):
        box: Any = phone.el(element_id).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
    phone.screenshot("conference-phone")
    phone.leave()
