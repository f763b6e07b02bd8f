"""Chromium and WHIP/WHEP: a page in the room plays a WHIP publisher, and the /whep-player/ page plays it too."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import RoomPage
from tests.servers import DaphneServer
from tests.test_whip import ahttp, negotiate, whip_peer

pytestmark = pytest.mark.django_db

ROOM = "whip-browser"

# Runs in the page: the Web SDK joins the room and plays the participant ``peer``; resolves with an error or null.
JOIN_AND_PLAY_JS = """
async ({ws, login, room, peer}) => {
  const api = await import("/static/rooms/roomapi.js");
  const until = (emitter, ok, bad) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no " + ok + " within 30 s")), 30000);
    emitter.on(ok, (value) => { clearTimeout(timer); resolve(value); });
    if (bad) emitter.on(bad, () => { clearTimeout(timer); reject(new Error(bad)); });
  });
  const connection = api.connect({urlServer: ws, username: login});
  await until(connection, api.SESSION_STATUS.ESTABLISHED, api.SESSION_STATUS.FAILED);
  const joined = connection.join({name: room});
  await until(joined, api.ROOM_EVENT.STATE, api.ROOM_EVENT.FAILED);
  window.whipTest = {api, connection, room: joined};
  for (let i = 0; i < 300; i++) {
    const p = joined.getParticipants().find((x) => x.name() === peer);
    if (p && p.getStreams().length) { window.whipTest.remote = p.play(document.body); break; }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!window.whipTest.remote) return "the WHIP publisher is not in the room";
  try {
    await until(window.whipTest.remote, api.STREAM_STATUS.PLAYING, api.STREAM_STATUS.FAILED);
  } catch (err) {
    return String(err.message || err);
  }
  return null;
}
"""

DECODED_JS = """
async () => {
  const report = await window.whipTest.remote.getStats();
  let decoded = 0;
  if (report) report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") decoded = s.framesDecoded || 0;
  });
  return decoded;
}
"""

PLAYER_JS = """
() => {
  const video = document.querySelector("video");
  const quality = video.getVideoPlaybackQuality();
  return {width: video.videoWidth, frames: quality.totalVideoFrames, error: video.dataset.error || null,
          session: video.dataset.session || null, others: document.body.querySelectorAll("*:not(script)").length};
}
"""


class WhipPublisher(threading.Thread):
    """An aiortc WHIP client (plain HTTP) in its own event loop: publishes until told to DELETE its session."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.published = threading.Event()
        self.release = threading.Event()
        self.status = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
        finally:
            self.published.set()

    async def _main(self) -> None:
        client = whip_peer()
        try:
            reply = await negotiate(client, self.url)
            self.status = reply.status
            self.published.set()
            await asyncio.to_thread(self.release.wait, 120)
            if reply.status == 201:
                await ahttp("DELETE", self.url.split("/whip/")[0] + client.location)
        finally:
            await client.close()


def _wait_for(page: Any, script: str, predicate: Callable[[Any], bool], attempts: int = 150) -> Any:
    value = None
    for _ in range(attempts):
        value = page.evaluate(script)
        if predicate(value):
            return value
        page.wait_for_timeout(200)
    raise AssertionError(f"never matched: {value}")


def test_a_page_in_the_room_and_the_whep_player_play_a_whip_publisher(
    open_page: Callable[..., RoomPage], server: DaphneServer
) -> None:
    """Chromium joins the room with the Web SDK and decodes the WHIP stream; /whep-player/ shows it in its <video>."""
    publisher = WhipPublisher(f"{server.http_url}/whip/{ROOM}?login=encoder")
    publisher.start()
    try:
        assert publisher.published.wait(60) and publisher.error is None, publisher.error
        assert publisher.status == 201
        page = open_page("/conference/").page
        error = page.evaluate(JOIN_AND_PLAY_JS, {"ws": server.ws_url, "login": "web", "room": ROOM, "peer": "encoder"})
        assert error is None, error
        assert _wait_for(page, DECODED_JS, lambda decoded: decoded >= 10) >= 10

        player = open_page(f"/whep-player/?room={ROOM}&stream=encoder").page
        state = _wait_for(player, PLAYER_JS, lambda s: s["error"] is not None or (s["width"] > 0 and s["frames"] > 10))
        assert state["error"] is None, state
        assert state["width"] == 320 and state["session"].startswith(f"{server.http_url}/whep/{ROOM}/encoder/")
        assert state["others"] == 1  # nothing but the <video>
        player.close()  # pagehide: the player DELETEs its session
    finally:
        publisher.release.set()
        publisher.join(30)
    assert publisher.error is None, publisher.error
    left = page.evaluate(
        """() => new Promise((resolve) => {
          const room = window.whipTest.room;
          const check = () => !room.getParticipants().some((x) => x.name() === "encoder");
          if (check()) return resolve(true);
          const timer = setInterval(() => { if (check()) { clearInterval(timer); resolve(true); } }, 100);
          setTimeout(() => { clearInterval(timer); resolve(false); }, 20000);
        })"""
    )
    assert left, "the WHIP publisher did not leave after DELETE"
