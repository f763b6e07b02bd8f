"""Who speaks, through the whole stack with Python SDK participants: a joiner learns the room's current active
speakers in the join reply, and muting takes a speaker out of the relay's list until it unmutes."""

from __future__ import annotations

import pytest

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from tests.media_sources import ToneAudioTrack
from tests.servers import DaphneServer

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(240)]

WAIT = 30.0


async def test_a_late_joiner_knows_who_speaks_at_once(server: DaphneServer) -> None:
    """Ann sends a tone and is the room's speaker; Cat joins later, while nothing changes: her join reply already
    lists Ann's stream (no ACTIVE_SPEAKERS event would come until the list changed)."""
    ann = await roomapi.connect(server.ws_url, "ann")
    bob = await roomapi.connect(server.ws_url, "bob")
    cat = await roomapi.connect(server.ws_url, "cat")
    try:
        ann_room = await ann.join("speakers-late")
        bob_room = await bob.join("speakers-late")
        published = await ann_room.publish(audio=ToneAudioTrack(amplitude=0.5))
        await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
        await bob_room.wait_for(ROOM_EVENT.ACTIVE_SPEAKERS, lambda e: e.speakers == (published.id,), timeout=WAIT)
        cat_room = await cat.join("speakers-late")
        assert cat_room.active_speakers == [published.id]
        assert cat_room.events[0].data["active_speakers"] == [published.id]  # the STATE event carries it
    finally:
        for connection in (ann, bob, cat):
            await connection.disconnect()


async def test_muting_leaves_the_list_and_unmuting_returns(server: DaphneServer) -> None:
    """A speaker muting its microphone leaves the relay's list and unmuting brings it back, several times over;
    a joiner while it is muted hears of nobody speaking."""
    ann = await roomapi.connect(server.ws_url, "ann")
    bob = await roomapi.connect(server.ws_url, "bob")
    cat = await roomapi.connect(server.ws_url, "cat")
    try:
        ann_room = await ann.join("speakers-mute")
        bob_room = await bob.join("speakers-mute")
        published = await ann_room.publish(audio=ToneAudioTrack(amplitude=0.5))
        await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
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
    finally:
        for connection in (ann, bob, cat):
            await connection.disconnect()
