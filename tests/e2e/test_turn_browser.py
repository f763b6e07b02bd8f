"""A Chromium page and a Python client, both relay-only, publish and play each other through a real coturn."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import roomapi
from media_relay.aiortc_compat import selected_candidate_types
from roomapi import ROOM_EVENT, STREAM_STATUS
from tests.e2e.conftest import RoomPage, _flush_database, _forget_dead_media_workers
from tests.media_sources import CounterVideoTrack, ToneAudioTrack
from tests.servers import DaphneServer
from tests.turnserver import TURNSERVER, TurnServer

pytestmark = pytest.mark.django_db

PY_WAIT = 30.0
ROOM = "turn-browser"

# Runs in the page: the SDK with relay-only ICE; resolves with the ICE servers the session got.
CONNECT_JS = """
async ({ws, login, room, policy}) => {
  const api = await import("/static/rooms/roomapi.js");
  const until = (emitter, ok, bad) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no " + ok + " within 30 s")), 30000);
    emitter.on(ok, (value) => { clearTimeout(timer); resolve(value); });
    if (bad) emitter.on(bad, () => {
      clearTimeout(timer);
      reject(new Error(JSON.stringify(emitter.getInfo ? emitter.getInfo() : bad)));
    });
  });
  const connection = api.connect({urlServer: ws, username: login, iceTransportPolicy: policy});
  await until(connection, api.SESSION_STATUS.ESTABLISHED, api.SESSION_STATUS.FAILED);
  const joined = connection.join({name: room});
  await until(joined, api.ROOM_EVENT.STATE, api.ROOM_EVENT.FAILED);
  window.turnTest = {api, connection, room: joined, until};
  return connection._iceServers;
}
"""

PUBLISH_JS = """
async () => {
  const t = window.turnTest;
  const stream = t.room.publish({display: document.body});
  t.local = stream;
  try {
    await t.until(stream, t.api.STREAM_STATUS.PUBLISHING, t.api.STREAM_STATUS.FAILED);
  } catch (err) {
    return {error: String(err.message || err)};
  }
  return {error: null};
}
"""

PLAY_JS = """
async (peer) => {
  const t = window.turnTest;
  for (let i = 0; i < 300; i++) {
    const p = t.room.getParticipants().find((x) => x.name() === peer);
    if (p && p.getStreams().length) { t.remote = p.play(document.body); break; }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!t.remote) return {error: "the peer published nothing"};
  await t.until(t.remote, t.api.STREAM_STATUS.PLAYING, t.api.STREAM_STATUS.FAILED);
  return {error: null};
}
"""

# The selected candidate pair's local type, and frames decoded (0 for a sender), of a stream's peer connection.
STATS_JS = """
async (which) => {
  const report = await window.turnTest[which].getStats();
  let pairId = null, decoded = 0;
  const byId = new Map();
  report.forEach((s) => {
    byId.set(s.id, s);
    if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    if (s.type === "inbound-rtp" && s.kind === "video") decoded = s.framesDecoded || 0;
  });
  const pair = pairId && byId.get(pairId);
  const local = pair && byId.get(pair.localCandidateId);
  return {local: local ? local.candidateType : null, decoded};
}
"""


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnServer]:
    """coturn on loopback (scripts/system-deps.sh installs it)."""
    if not shutil.which(TURNSERVER) and not os.path.exists(TURNSERVER):
        if os.environ.get("CI") == "true":
            pytest.fail("coturn's turnserver is required under CI; run scripts/system-deps.sh")
        pytest.skip("needs coturn's turnserver (scripts/system-deps.sh installs it)")
    with TurnServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any, turn: TurnServer) -> Iterator[DaphneServer]:
    """This module's own daphne process: it hands coturn's URL with minted credentials to every session."""
    _forget_dead_media_workers()
    env = {"ROOM_IDLE_TIMEOUT": "3", "LOG_LEVEL": "WARNING", "TURN_URLS": turn.url, "TURN_SECRET": turn.secret,
           "MEDIA_ALLOWED_CANDIDATE_NETWORKS": "127.0.0.1/32",  # coturn on loopback: its relay candidates pass
           # Its own channel layer and media registry: with a shared Redis its rooms could be placed on another
           # live server's in-process worker, which screens out coturn's loopback candidates.
           "REDIS_URL": ""}
    with django_db_blocker.unblock():
        srv = DaphneServer(env)
        srv.start()
    try:
        yield srv
    finally:
        srv.close()
        with django_db_blocker.unblock(), ThreadPoolExecutor(1) as pool:
            pool.submit(_flush_database).result(timeout=60)


class RelayOnlyPython(threading.Thread):
    """The Python SDK, relay-only, in its own event loop: publishes, plays ``peer``, notes the pairs' types."""

    def __init__(self, ws_url: str, login: str, peer: str) -> None:
        super().__init__(daemon=True)
        self.ws_url, self.login, self.peer = ws_url, login, peer
        self.published = threading.Event()
        self.finished = threading.Event()
        self.release = threading.Event()
        self.types: dict[str, Any] = {}
        self.frames = 0
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
        connection = await roomapi.connect(self.ws_url, self.login, ice_transport_policy="relay")
        try:
            room = await connection.join(ROOM)
            stream = await room.publish(video=CounterVideoTrack(), audio=ToneAudioTrack())
            await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=PY_WAIT)
            self.types["publish"] = selected_candidate_types(stream.pc.getTransceivers()[0].sender.transport.transport)
            self.published.set()
            peer = self.peer
            await room.wait_for(
                ROOM_EVENT.PUBLISHED, lambda e: e.participant is not None and e.participant.name == peer, timeout=60
            )
            participant = room.get_participant(self.peer)
            assert participant is not None
            playing = await participant.get_streams()[0].play()
            await playing.wait_for(STREAM_STATUS.PLAYING, timeout=PY_WAIT)
            assert playing.video is not None
            for _ in range(10):
                await asyncio.wait_for(playing.video.recv(), timeout=PY_WAIT)
                self.frames += 1
            self.types["play"] = selected_candidate_types(playing.pc.getTransceivers()[0].sender.transport.transport)
            self.finished.set()
            await asyncio.to_thread(self.release.wait, 60)
        finally:
            await connection.disconnect()


def test_relay_only_browser_and_python_client_through_coturn(
    open_page: Callable[..., RoomPage], server: DaphneServer, turn: TurnServer
) -> None:
    """Chromium (iceTransportPolicy "relay") and the Python SDK (relay-only) publish and play via TURN only."""
    bot = RelayOnlyPython(server.ws_url, "pyrelay", "webrelay")
    bot.start()
    try:
        assert bot.published.wait(60) and bot.error is None, bot.error
        page = open_page("/conference/").page
        servers = page.evaluate(CONNECT_JS, {"ws": server.ws_url, "login": "webrelay", "room": ROOM, "policy": "relay"})
        assert servers and servers[0]["urls"] == [turn.url] and servers[0]["username"].count(":") == 1
        assert page.evaluate(PUBLISH_JS) == {"error": None}
        assert page.evaluate(PLAY_JS, "pyrelay") == {"error": None}
        page.wait_for_function(
            "async () => (await window.turnTest.remote.getStats()) !== null", timeout=20_000
        )
        remote: dict[str, Any] = {}
        for _ in range(100):
            remote = page.evaluate(STATS_JS, "remote")
            if remote["decoded"] >= 10:
                break
            page.wait_for_timeout(200)
        assert remote == {"local": "relay", "decoded": remote["decoded"]} and remote["decoded"] >= 10, remote
        assert page.evaluate(STATS_JS, "local")["local"] == "relay"
        assert bot.finished.wait(60) and bot.error is None, bot.error
        assert bot.frames == 10
        assert bot.types["publish"][0] == "relay" and bot.types["play"][0] == "relay", bot.types
    finally:
        bot.release.set()
        bot.join(30)


def test_relay_only_browser_with_a_refused_credential_fails_with_ice_failed(
    open_page: Callable[..., RoomPage], server: DaphneServer, turn: TurnServer
) -> None:
    """A page whose TURN credential coturn refuses gets FAILED with ICE_FAILED and the reason, at once."""
    page = open_page("/conference/").page
    page.evaluate(CONNECT_JS, {"ws": server.ws_url, "login": "badcred", "room": ROOM + "-bad", "policy": "relay"})
    # Spoil the credential the server minted: coturn answers 401 to every allocation.
    page.evaluate("() => { window.turnTest.connection._iceServers[0].credential = 'd3JvbmcK'; }")
    result = page.evaluate(PUBLISH_JS)
    assert result["error"] and "ice_failed" in result["error"] and "TURN server refused" in result["error"], result
