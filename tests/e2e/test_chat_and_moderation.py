"""Chat and moderation on the Conference page: history at join, "load earlier", server times, images, unread
counter, copying the invite, and a moderator's actions from the page reaching the others."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, expect

from tests.e2e.bots import BotCrowd
from tests.e2e.conftest import WAIT_MS, RoomPage
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db


def png_data_url(width: int = 24, height: int = 16) -> str:
    """A small red PNG as a data: URL."""
    raw = b"".join(b"\x00" + b"\xff\x20\x20" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.fixture(scope="module")
def pair(open_page: Callable[..., RoomPage]) -> dict[str, RoomPage]:
    """Alice creates a room for five and writes before Bob comes; Bob joins then."""
    alice = open_page("/conference/?max=5")
    alice.join("alice")
    alice.send("written before bob came")
    alice.send("a second one")
    bob = open_page(alice.invite())
    bob.join("bob")
    return {"alice": alice, "bob": bob}


def test_history_shown_at_join_in_local_time(pair: dict[str, RoomPage]) -> None:
    """Bob's log opens with the messages sent before he joined, stamped with the server's time in his local time."""
    bob = pair["bob"]
    line = bob.chat_line("alice", "written before bob came")
    expect(line).to_have_count(1)
    expect(bob.chat_line("chat", "earlier messages: 2")).to_have_count(1)
    sent_at = line.locator("time").get_attribute("datetime")
    assert sent_at and sent_at.endswith("Z"), sent_at
    local = bob.page.evaluate(
        "(iso) => { const d = new Date(iso); return String(d.getHours()).padStart(2, '0') + ':' + "
        "String(d.getMinutes()).padStart(2, '0'); }",
        sent_at,
    )
    assert line.locator("time").inner_text() == local


def test_load_earlier_pages_through_the_history(open_page: Callable[..., RoomPage], server: DaphneServer) -> None:
    """75 messages before Rita comes: her log opens with the newest 50 and a "Load earlier" button; each click
    puts the next older page (20) above them, oldest first, until there is nothing older and the button goes."""
    writer = BotCrowd(server.ws_url, "long-history", ["wanda"], publish=False, messages=75)
    writer.start()
    try:
        assert writer.ready.wait(90) and writer.error is None, writer.error
        rita = open_page("/conference/?roomName=long-history")
        rita.join("rita", publish=False)
        lines = rita.page.locator("#chat .chat-line[data-id]")
        button = rita.el("loadEarlierBtn")
        expect(lines).to_have_count(50, timeout=WAIT_MS)
        expect(rita.chat_line("chat", "earlier messages: 50")).to_have_count(1)
        expect(button).to_be_visible()
        button.click()
        expect(lines).to_have_count(70, timeout=WAIT_MS)
        expect(rita.page.locator("#announcer")).to_contain_text("20 earlier messages loaded")
        expect(button).to_be_visible()
        button.click()
        expect(lines).to_have_count(75, timeout=WAIT_MS)
        expect(button).to_be_hidden()
        texts = lines.locator(".chat-text").all_inner_texts()
        assert texts == [f"message {n}" for n in range(1, 76)], texts
        # The history's header line stays above every message.
        first = rita.page.locator("#chat .chat-line").first
        expect(first).to_have_text(re.compile("earlier messages: 50$"))
        rita.leave()
        rita.close()
    finally:
        writer.stop()


def test_image_message_is_an_image_and_other_urls_stay_text(pair: dict[str, RoomPage]) -> None:
    """A data:image/png message shows as a small image; javascript:, http: and data:text/html stay plain text."""
    alice, bob = pair["alice"], pair["bob"]
    image = png_data_url()
    alice.el("message").fill(image)
    alice.el("sendBtn").click()
    img = bob.page.locator("#chat .chat-line img.chat-image")
    expect(img).to_have_count(1, timeout=WAIT_MS)
    assert img.get_attribute("src") == image
    assert img.get_attribute("alt") == "image sent by alice"
    bob.page.wait_for_function("() => document.querySelector('#chat img.chat-image').naturalWidth === 24")
    box = img.bounding_box()
    assert box and box["width"] <= 240 and box["height"] <= 180
    for unsafe in ("javascript:alert(document.cookie)", "http://example.com/cat.png",
                   "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="):
        alice.send(unsafe)
        expect(bob.chat_line("alice", unsafe)).to_have_count(1, timeout=WAIT_MS)
    assert bob.page.locator("#chat a").count() == 0
    assert bob.page.locator("#chat img").count() == 1
    bob.screenshot("conference-chat-image")


def test_private_messages_are_marked(pair: dict[str, RoomPage]) -> None:
    """A private message is marked "private, to you" at its recipient and "private, to bob" at its sender."""
    alice, bob = pair["alice"], pair["bob"]
    alice.send("only for bob", to="bob")
    line = bob.chat_line("alice", "only for bob")
    expect(line).to_have_count(1, timeout=WAIT_MS)
    expect(line).to_have_attribute("data-note", "private, to you")
    expect(line).to_have_class(re.compile("chat-private"))
    expect(alice.chat_line("alice", "only for bob")).to_have_attribute("data-note", "private, to bob")


def test_unread_counter_while_the_chat_is_hidden(pair: dict[str, RoomPage]) -> None:
    """With the chat hidden, Bob's Chat button counts new messages; showing the chat clears the count."""
    alice, bob = pair["alice"], pair["bob"]
    bob.el("chatToggle").click()
    expect(bob.el("chatToggle")).to_have_attribute("aria-expanded", "false")
    expect(bob.el("chatCard")).to_be_hidden()
    alice.send("are you there?")
    alice.send("hello?")
    expect(bob.el("unread")).to_have_text("2 new", timeout=WAIT_MS)
    bob.el("chatToggle").click()
    expect(bob.el("unread")).to_be_hidden()
    expect(bob.chat_line("alice", "hello?")).to_have_count(1)


def test_copy_invite_button(pair: dict[str, RoomPage]) -> None:
    """The copy button puts the invite link on the clipboard and says so."""
    bob = pair["bob"]
    bob.context.grant_permissions(["clipboard-read", "clipboard-write", "camera", "microphone"])
    bob.el("copyInviteBtn").click()
    expect(bob.el("copyState")).to_have_text("Copied")
    assert bob.page.evaluate("navigator.clipboard.readText()") == bob.invite()


def _person(page: RoomPage, login: str) -> Locator:
    return page.page.locator(f"#people li[data-login='{login}']")


def test_participants_panel_and_moderation(pair: dict[str, RoomPage], open_page: Callable[..., RoomPage]) -> None:
    """Alice (the creator, a moderator) mutes Bob's microphone, locks the room, changes the limit and kicks
    Carol from her page; the others see each action; Bob's page offers no moderation and a forced try is refused."""
    alice, bob = pair["alice"], pair["bob"]
    carol = open_page(alice.invite())
    carol.join("carol")
    for page in (alice, bob, carol):
        expect(page.page.locator("#people li")).to_have_count(3, timeout=WAIT_MS)
    expect(_person(carol, "alice").locator(".role")).to_have_text("moderator")
    expect(_person(carol, "bob").locator(".role")).to_have_text("publisher")
    expect(alice.el("roomControls")).to_be_visible()
    expect(bob.el("roomControls")).to_be_hidden()
    assert bob.page.locator("#people .person-actions").count() == 0
    # Mute Bob's microphone: Carol's tile of Bob and her panel show it.
    expect(alice.page.get_by_role("button", name="Mute bob's microphone")).to_be_visible(timeout=WAIT_MS)
    alice.page.get_by_role("button", name="Mute bob's microphone").click()
    bob_tile = carol.page.locator("#grid .tile-remote").filter(has=carol.page.locator(".tile-name", has_text="bob"))
    expect(bob_tile).to_have_attribute("data-audio-muted", "true", timeout=WAIT_MS)
    expect(_person(carol, "bob").locator(".flag[data-kind='mic']")).to_have_attribute("data-state", "off")
    # Lock: a newcomer is refused, the others see "locked"; then unlock.
    alice.el("lockBtn").click()
    expect(carol.el("roomState")).to_contain_text("locked", timeout=WAIT_MS)
    dave = open_page(alice.invite())
    dave.el("login").fill("dave")
    dave.el("joinBtn").click()
    expect(dave.el("failedInfo")).to_have_text("The room is locked: nobody new may join.", timeout=WAIT_MS)
    dave.close()
    alice.el("lockBtn").click()
    expect(carol.el("roomState")).to_contain_text("open", timeout=WAIT_MS)
    # The limit.
    alice.el("limitInput").fill("7")
    alice.el("limitBtn").click()
    expect(bob.el("roomState")).to_contain_text("limit 7", timeout=WAIT_MS)
    # A forced moderation from Bob's page is refused cleanly.
    assert bob.page.evaluate("window.conferencePage.moderate('lock', {})") is False
    expect(bob.el("failedInfo")).to_have_text("Only a moderator may do that.")
    expect(bob.el("status")).to_have_text("ESTABLISHED")
    alice.screenshot("conference-moderator-alice")
    # Kick Carol.
    alice.page.get_by_role("button", name="Remove carol from the room").click()
    expect(carol.chat_line("chat", "you were removed from the room")).to_have_count(1, timeout=WAIT_MS)
    expect(carol.el("joinBtn")).to_have_text("Join")
    expect(bob.chat_line("carol", "left")).to_have_count(1, timeout=WAIT_MS)
    expect(bob.page.locator("#people li")).to_have_count(2)
