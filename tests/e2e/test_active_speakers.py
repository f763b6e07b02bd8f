"""Who speaks, through the whole stack with Python SDK participants: a joiner learns the room's current active
speakers in the join reply, and muting takes a speaker out of the relay's list until it unmutes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from tests.e2e.bots import BotCrowd
from tests.e2e.conftest import RoomPage
from tests.media_sources import ToneAudioTrack
from tests.servers import DaphneServer

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(240)]

WAIT = 30.0

# Runs in a page: "eve" joins and waits (bounded) until the relay lists ann; then "dee" joins and reports what the
# Web SDK knows of the speakers when it emits STATE, and the first ACTIVE_SPEAKERS it emits (right after STATE).
JOIN_JS = """
async ({ws, room}) => {
  const api = await import("/static/rooms/roomapi.js");
  const join = async (login) => {
    const connection = api.connect({urlServer: ws, username: login});
    await new Promise((resolve, reject) => {
      connection.on(api.SESSION_STATUS.ESTABLISHED, resolve).on(api.SESSION_STATUS.FAILED, reject);
    });
    return {connection, room: connection.join({name: room})};
  };
  const eve = await join("eve");
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("ann never spoke for eve")), 30000);
    eve.room.on(api.ROOM_EVENT.ACTIVE_SPEAKERS, (speakers) => {
      if (speakers.some((s) => s.login === "ann")) { clearTimeout(timer); resolve(); }
    });
  });
  const dee = await join("dee");
  const emitted = [];
  dee.room.on(api.ROOM_EVENT.ACTIVE_SPEAKERS, (speakers) => emitted.push(speakers.map((s) => s.login)));
  const atState = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no STATE")), 20000);
    dee.room.on(api.ROOM_EVENT.STATE, (r) => { clearTimeout(timer); resolve(r.activeSpeakers().map((s) => s.login)); });
    dee.room.on(api.ROOM_EVENT.FAILED, (r, info) => reject(new Error(JSON.stringify(info))));
  });
  await Promise.resolve();
  eve.connection.disconnect();
  dee.connection.disconnect();
  return {atState, first: emitted.length ? emitted[0] : null};
}
"""


@asynccontextmanager
async def ann_speaking_to_bob(server: DaphneServer, room: str) -> AsyncIterator[tuple[Any, Any, Any]]:
    """Ann publishing a tone in ``room`` with Bob there, and Cat connected but not joined: (stream, bob's room, cat).
    Every connection is closed at the end."""
    ann = await roomapi.connect(server.ws_url, "ann")
    bob = await roomapi.connect(server.ws_url, "bob")
    cat = await roomapi.connect(server.ws_url, "cat")
    try:
        ann_room = await ann.join(room)
        bob_room = await bob.join(room)
        published = await ann_room.publish(audio=ToneAudioTrack(amplitude=0.5))
        await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
        yield published, bob_room, cat
    finally:
        for connection in (ann, bob, cat):
            await connection.disconnect()


async def test_a_late_joiner_knows_who_speaks_at_once(server: DaphneServer) -> None:
    """Ann sends a tone and is the room's speaker; Cat joins later, while nothing changes: her join reply already
    lists Ann's stream (no ACTIVE_SPEAKERS event would come until the list changed)."""
    async with ann_speaking_to_bob(server, "speakers-late") as (published, bob_room, cat):
        await bob_room.wait_for(ROOM_EVENT.ACTIVE_SPEAKERS, lambda e: e.speakers == (published.id,), timeout=WAIT)
        cat_room = await cat.join("speakers-late")
        assert cat_room.active_speakers == [published.id]
        assert cat_room.events[0].data["active_speakers"] == [published.id]  # the STATE event carries it


async def test_muting_leaves_the_list_and_unmuting_returns(server: DaphneServer) -> None:
    """A speaker muting its microphone leaves the relay's list and unmuting brings it back, several times over;
    a joiner while it is muted hears of nobody speaking."""
    async with ann_speaking_to_bob(server, "speakers-mute") as (published, bob_room, cat):
        for _ in range(3):
            await bob_room.wait_for(ROOM_EVENT.ACTIVE_SPEAKERS, lambda e: e.speakers == (published.id,), timeout=WAIT)
            await published.mute_audio()
            await bob_room.wait_for(ROOM_EVENT.ACTIVE_SPEAKERS, lambda e: e.speakers == (), timeout=WAIT)
            await published.unmute_audio()
        await bob_room.wait_for(ROOM_EVENT.ACTIVE_SPEAKERS, lambda e: e.speakers == (published.id,), timeout=WAIT)
        await published.mute_audio()
        await bob_room.wait_for(ROOM_EVENT.ACTIVE_SPEAKERS, lambda e: e.speakers == (), timeout=WAIT)
        cat_room = await cat.join("speakers-mute")
        assert cat_room.active_speakers == []


# Last in the module: Playwright's sync API leaves an event loop in this thread, which async tests would trip on.
def test_the_web_sdk_starts_from_the_join(server: DaphneServer, open_page: Callable[..., RoomPage]) -> None:
    """A page joining while Ann speaks: the Web SDK knows her at STATE and emits ACTIVE_SPEAKERS with her login."""
    crowd = BotCrowd(server.ws_url, "speakers-web", ["ann"], speakers=("ann",))
    crowd.start()
    try:
        assert crowd.ready.wait(60) and crowd.error is None, crowd.error
        page = open_page("/")
        result = page.page.evaluate(JOIN_JS, {"ws": server.ws_url, "room": "speakers-web"})
        assert result == {"atState": ["ann"], "first": ["ann"]}
        page.close()
    finally:
        crowd.stop()
