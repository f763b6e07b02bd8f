"""The index, Two Way Video Chat and Video Chat & Screen pages, and a room mixing a browser with the Python SDK."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from django.core.management import call_command
from playwright.sync_api import Browser, expect

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from tests.e2e.conftest import WAIT_MS, RoomPage, video_chat_pair
from tests.media_sources import CounterVideoTrack, ToneAudioTrack
from tests.servers import ROOT, DaphneServer, free_port

pytestmark = pytest.mark.django_db

PY_WAIT = 20.0


def test_index_links_the_three_pages(open_page: Callable[..., RoomPage]) -> None:
    """The index links Conference, Two Way Video Chat and Video Chat & Screen, and each page opens."""
    home = open_page("/")
    for link_id, path, title in (
        ("conferenceLink", "/conference/", "Conference"),
        ("videoChatLink", "/video-chat/", "Two Way Video Chat"),
        ("screenSharingLink", "/screen-sharing/", "Video Chat & Screen"),
    ):
        expect(home.el(link_id)).to_have_attribute("href", path)
        home.el(link_id).click()
        expect(home.page.locator("h1.page-title")).to_contain_text(title)
        home.page.go_back()
    home.screenshot("index")
    home.close()


def test_video_chat_two_pages(open_page: Callable[..., RoomPage]) -> None:
    """Two pages on /video-chat/ see each other large, themselves small, and chat."""
    ann, ben = video_chat_pair(open_page)
    for page in (ann, ben):
        pip: Any = page.el("localTile").bounding_box()
        big: Any = page.el("remote").bounding_box()
        assert pip["width"] < big["width"] / 2 and pip["x"] >= big["x"] and pip["y"] >= big["y"]
    ann.send("hi ben, can you hear me?")
    expect(ben.chat_line("ann", "hi ben, can you hear me?")).to_have_count(1, timeout=WAIT_MS)
    assert ben.chat_line("chat", "participants: ann").count() == 1
    ann.screenshot("video-chat-ann")
    ben.screenshot("video-chat-ben")
    third = open_page(ann.invite())
    third.el("login").fill("cleo")
    third.el("joinBtn").click()
    expect(third.el("failedInfo")).to_have_text("Current room is full.", timeout=WAIT_MS)
    third.close()
    ben.leave()
    expect(ann.el("remoteStatus")).to_have_text("NONE", timeout=WAIT_MS)
    expect(ann.chat_line("ben", "left")).to_have_count(1, timeout=WAIT_MS)
    ann.leave()
    ann.close()
    ben.close()


def test_screen_sharing_seen_by_the_other(open_page: Callable[..., RoomPage]) -> None:
    """On /screen-sharing/, Share publishes the screen as a second stream that the other page plays."""
    ann = open_page("/screen-sharing/")
    ben = open_page(ann.invite())
    ann.join("ann")
    ben.join("ben")
    expect(ben.el("remoteStatus")).to_have_text("PLAYING", timeout=20_000)
    ann.el("width").fill("640")
    ann.el("height").fill("360")
    ann.el("fps").fill("15")
    ann.el("shareBtn").click()
    expect(ann.el("localScreenStatus")).to_have_text("PUBLISHING", timeout=20_000)
    expect(ann.el("shareBtn")).to_have_text("Stop sharing")
    expect(ben.el("remoteScreenStatus")).to_have_text("PLAYING", timeout=20_000)
    screen = ben.wait_video("remoteScreenDisplay")
    assert screen["width"] > 0
    ben.wait_video("remoteDisplay")  # the camera keeps playing beside the screen
    ann.screenshot("screen-sharing-ann")
    ben.screenshot("screen-sharing-ben")
    ann.el("shareBtn").click()
    expect(ben.el("remoteScreenStatus")).to_have_text("NONE", timeout=WAIT_MS)
    expect(ben.el("remoteStatus")).to_have_text("PLAYING")
    ann.leave()
    ben.leave()
    ann.close()
    ben.close()


class PythonParticipant(threading.Thread):
    """The Python roomapi SDK in its own thread and event loop: publishes a counter video, plays ``peer``."""

    def __init__(self, ws_url: str, room: str, login: str, peer: str) -> None:
        super().__init__(daemon=True)
        self.ws_url, self.room_name, self.login, self.peer = ws_url, room, login, peer
        self.published = threading.Event()
        self.finished = threading.Event()
        self.release = threading.Event()
        self.frames: list[tuple[int, int]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
        finally:
            self.published.set()
            self.finished.set()

    async def _main(self) -> None:
        connection = await roomapi.connect(self.ws_url, self.login)
        try:
            room = await connection.join(self.room_name)
            stream = await room.publish(video=CounterVideoTrack((40, 90, 200), 640, 360), audio=ToneAudioTrack())
            await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=PY_WAIT)
            self.published.set()
            await room.wait_for(
                ROOM_EVENT.PUBLISHED,
                lambda e: e.participant is not None and e.participant.name == self.peer,
                timeout=60,
            )
            participant = room.get_participant(self.peer)
            assert participant is not None
            playing = await participant.get_streams()[0].play()
            await playing.wait_for(STREAM_STATUS.PLAYING, timeout=PY_WAIT)
            assert playing.video is not None
            for _ in range(15):
                frame = await asyncio.wait_for(playing.video.recv(), timeout=PY_WAIT)
                assert isinstance(frame, av.VideoFrame)
                self.frames.append((frame.width, frame.height))
            self.finished.set()
            await asyncio.to_thread(self.release.wait, 60)
        finally:
            await connection.disconnect()


def test_browser_and_python_client_see_each_other(open_page: Callable[..., RoomPage], server: DaphneServer) -> None:
    """A browser page and a Python roomapi client in one room each play the other's video."""
    bot = PythonParticipant(server.ws_url, "mixed-room", "pybot", "webby")
    bot.start()
    try:
        assert bot.published.wait(30) and bot.error is None, bot.error
        page = open_page("/conference/?roomName=mixed-room")
        page.join("webby")
        expect(page.el("participant1Name")).to_have_text("pybot")
        expect(page.el("participant1Status")).to_have_text("PLAYING", timeout=20_000)
        video = page.wait_video("participant1Display")
        assert (video["width"], video["height"]) == (640, 360)
        assert bot.finished.wait(60), "the Python client got no frames from the browser"
        assert bot.error is None, bot.error
        assert len(bot.frames) == 15 and all(w > 0 and h > 0 for w, h in bot.frames)
        page.screenshot("conference-with-python-client")
    finally:
        bot.release.set()
        bot.join(30)
    expect(page.el("participant1")).to_have_count(0, timeout=WAIT_MS)


def test_https_with_a_self_signed_certificate(
    browser: Browser, server: DaphneServer, tmp_path: Path
) -> None:
    """`manage.py makecert` + `daphne -e ssl:...` serve the pages over HTTPS; the page defaults to wss:// and joins."""
    call_command("makecert", dir=str(tmp_path), force=True, stdout=io.StringIO())
    port = free_port()
    endpoint = f"ssl:{port}:interface=127.0.0.1:privateKey={tmp_path / 'key.pem'}:certKey={tmp_path / 'cert.pem'}"
    with (tmp_path / "daphne.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-e", endpoint, "conference.asgi:application"],
            cwd=ROOT, env=server.environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    context = browser.new_context(ignore_https_errors=True)
    try:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2, context=insecure):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "daphne.log").read_text()
                time.sleep(0.2)
        page = RoomPage(context.new_page(), context)
        page.page.goto(f"https://127.0.0.1:{port}/conference/")
        expect(page.el("url")).to_have_value(f"wss://127.0.0.1:{port}")
        assert page.invite().startswith(f"https://127.0.0.1:{port}/conference/?roomName=room-")
        page.join("secure")
        expect(page.chat_line("chat", "room is empty")).to_have_count(1)
        page.leave()
    finally:
        context.close()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
