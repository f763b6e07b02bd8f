"""Simulcast and active speakers through the whole stack: daphne, the Room API, both SDKs.

A Chromium page publishes its fake 1280x720 camera with the Web SDK's ``publish({simulcast: true})``; Python SDK
players choose a quality and decode frames of that layer's width, switch while playing, and the publisher's page
pauses the layers nobody wants (dynacast).  A Python SDK publisher sending a tone becomes the room's active
speaker for the others.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import roomapi
from benchmarks.simulcast import CHROMIUM, WIDTHS, until, width_reached
from roomapi import QUALITY, ROOM_EVENT, STREAM_STATUS
from tests.e2e.conftest import CHROMIUM_ARGS
from tests.media_sources import ToneAudioTrack
from tests.servers import DaphneServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

WAIT = 45.0

SCRIPT = """async () => {
  const {connect, SESSION_STATUS, ROOM_EVENT, STREAM_STATUS} = await import("/static/rooms/roomapi.js");
  const display = document.createElement("div");
  display.style.width = "320px";
  document.body.appendChild(display);
  window.start = (url, name) => new Promise((resolve, reject) => {
    connect({urlServer: url, username: "pub"}).on(SESSION_STATUS.ESTABLISHED, (session) => {
      session.join({name}).on(ROOM_EVENT.STATE, (room) => {
        const stream = room.publish({
          display,
          constraints: {audio: false, video: {width: {exact: 1280}, height: {exact: 720}}},
          simulcast: true,
        });
        window.stream = stream;
        stream.on(STREAM_STATUS.PUBLISHING, () => resolve(stream.id()));
        stream.on(STREAM_STATUS.FAILED, () => reject(new Error(JSON.stringify(stream.getInfo()))));
      });
    });
  });
  window.layers = () => window.stream.activeLayers();
}"""


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """A daphne process with the relay in-process, without downlink adaptation (the wanted quality decides: on a
    loaded machine the players' own receive queues overflow, and that loss would move them; see test_bandwidth)."""
    with DaphneServer({"ROOM_IDLE_TIMEOUT": "2", "MEDIA_BANDWIDTH_ADAPTATION": "false"}) as srv:
        yield srv


@pytest.fixture
async def page(server: DaphneServer) -> AsyncIterator[Any]:
    """A Chromium tab on the server's origin with the Web SDK loaded (a page routed in by Playwright would count as
    public to Chromium's local network access checks, which then block the WebSocket to 127.0.0.1)."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is required under CI ({CHROMIUM}); run scripts/system-deps.sh")
        pytest.skip(f"needs Chromium at {CHROMIUM}")
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = await (await browser.new_context()).new_page()
            await tab.goto(f"{server.http_url}/healthz")
            await tab.evaluate(SCRIPT)
            yield tab
        finally:
            await browser.close()


async def test_python_players_choose_simulcast_layers_of_a_browser(server: DaphneServer, page: Any) -> None:
    """Low and high players decode 320 and 1280 wide frames; the low one switches up and back while playing; the
    forwarded quality comes in play_status; the page sends only the layers players want."""
    stream_id = await asyncio.wait_for(
        page.evaluate("([url, name]) => window.start(url, name)", [server.ws_url, "simulcast"]), WAIT
    )
    viewer = await roomapi.connect(server.ws_url, "viewer")
    try:
        room = await viewer.join("simulcast")
        publisher = room.get_participant("pub")
        assert publisher is not None and [s.id for s in publisher.get_streams()] == [stream_id]
        stream = publisher.get_streams()[0]
        await until_async(lambda: page.evaluate("window.layers()"), ["q"], "dynacast never paused the upper layers")
        low = await stream.play(quality=QUALITY.LOW)
        await low.wait_for(STREAM_STATUS.PLAYING, timeout=WAIT)
        assert low.video is not None
        await width_reached(low.video, WIDTHS["low"], WAIT)
        await low.wait_for_quality("low", timeout=WAIT)
        high = await stream.play(quality=QUALITY.HIGH)
        await high.wait_for(STREAM_STATUS.PLAYING, timeout=WAIT)
        assert high.video is not None
        await width_reached(high.video, WIDTHS["high"], WAIT)
        await high.wait_for_quality("high", timeout=WAIT)
        await until_async(lambda: page.evaluate("window.layers()"), ["q", "h", "f"], "dynacast never resumed")
        await high.stop()  # one decoder at a time: a loaded machine decodes 1280x720 slowly
        await until_async(lambda: page.evaluate("window.layers()"), ["q"], "dynacast never paused again")
        await low.set_quality(QUALITY.HIGH)
        await width_reached(low.video, WIDTHS["high"], WAIT)
        await low.wait_for_quality("high", timeout=WAIT)
        await low.set_quality(QUALITY.MEDIUM)
        await width_reached(low.video, WIDTHS["medium"], WAIT)
        await low.wait_for_quality("medium", timeout=WAIT)
        await until_async(lambda: page.evaluate("window.layers()"), ["q", "h"], "dynacast never paused the top")
    finally:
        await viewer.disconnect()


async def test_a_tone_makes_its_publisher_the_active_speaker(server: DaphneServer) -> None:
    """A publisher sending a tone is announced in active_speakers to the room; silence ends it."""
    ann = await roomapi.connect(server.ws_url, "ann")
    bob = await roomapi.connect(server.ws_url, "bob")
    try:
        ann_room = await ann.join("speakers")
        bob_room = await bob.join("speakers")
        tone = ToneAudioTrack(amplitude=0.3)
        published = await ann_room.publish(audio=tone)
        await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
        event = await bob_room.wait_for(
            ROOM_EVENT.ACTIVE_SPEAKERS, lambda e: e.speakers == (published.id,), timeout=WAIT
        )
        assert bob_room.active_speakers == [published.id]
        assert event.data["streams"] == [published.id]
        tone.amplitude = 0.0
        await bob_room.wait_for(ROOM_EVENT.ACTIVE_SPEAKERS, lambda e: e.speakers == (), timeout=WAIT)
        await published.stop()
    finally:
        await ann.disconnect()
        await bob.disconnect()


async def until_async(read: Any, expected: Any, message: str, timeout: float = WAIT) -> None:
    """Poll an awaitable reader until it returns ``expected`` (bounded)."""
    last: list[Any] = []

    async def check() -> bool:
        last[:] = [await read()]
        return bool(last[0] == expected)

    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{message}: {last}")
        await asyncio.sleep(0.2)


__all__ = ["until"]
