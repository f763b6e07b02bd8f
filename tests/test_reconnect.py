"""The Python SDK resumes by itself after its socket is cut mid-call, media included (issue 11, finding 1).

Real daphne, real aiortc peers: ann publishes and plays bob; her WebSocket's TCP
connection is aborted (no close frame).  She goes RECONNECTING and back, the
SDK resumes the room with her secret, publishes her tracks again and plays bob
again; frames rise at both ends and bob never sees ann LEFT or JOINED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import roomapi
from roomapi import ROOM_EVENT, SESSION_STATUS, STREAM_STATUS
from tests.media_sources import CounterVideoTrack, read_counter
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """A daphne process whose dropped participants wait long enough to resume."""
    with DaphneServer({"MEDIA_CONNECT_TIMEOUT": "5", "ROOM_IDLE_TIMEOUT": "30"}) as srv:
        yield srv


async def latest_counter(track: Any, count: int = 5) -> int:
    """The counter of the last of ``count`` frames read from a remote track (bounded)."""

    async def read() -> int:
        frame = None
        for _ in range(count):
            frame = await track.recv()
        return read_counter(frame)

    return await asyncio.wait_for(read(), WAIT)


async def test_a_publisher_and_player_resumes_with_media_after_its_socket_is_cut(server: DaphneServer) -> None:
    """Abort ann's socket mid-call: RECONNECTING then RECONNECTED, her stream object publishes again (a new id)
    and her playback plays again (new tracks), frames rise at bob's and at ann's; bob sees no LEFT/JOINED."""
    ann = await roomapi.connect(server.ws_url, "ann", reconnect_delay=0.2)
    bob = await roomapi.connect(server.ws_url, "bob")
    statuses: list[str] = []
    for status in (SESSION_STATUS.RECONNECTING, SESSION_STATUS.ESTABLISHED, SESSION_STATUS.DISCONNECTED):
        ann.on(status, lambda conn: statuses.append(conn.status))
    room_a, room_b = await ann.join("cut"), await bob.join("cut")
    ann_source, bob_source = CounterVideoTrack((220, 40, 40)), CounterVideoTrack((40, 200, 40))
    published_a = await room_a.publish(video=ann_source)
    published_b = await room_b.publish(video=bob_source)
    await published_a.wait_for(STREAM_STATUS.PUBLISHING, WAIT)
    await published_b.wait_for(STREAM_STATUS.PUBLISHING, WAIT)
    seen_a = await room_b.wait_for(ROOM_EVENT.PUBLISHED, lambda e: e.participant is not None
                                   and e.participant.login == "ann", WAIT)
    seen_b = await room_a.wait_for(ROOM_EVENT.PUBLISHED, lambda e: e.participant is not None
                                   and e.participant.login == "bob", WAIT)
    assert seen_a.stream is not None and seen_b.stream is not None
    bob_plays_ann = await seen_a.stream.play()
    ann_plays_bob = await seen_b.stream.play()
    before_b = await latest_counter(bob_plays_ann.video)
    before_a = await latest_counter(ann_plays_bob.video)
    old_id = published_a.id

    ann._ws.transport.abort()  # the TCP connection is cut: no close frame either way

    await room_a.wait_for(ROOM_EVENT.RECONNECTING, timeout=WAIT)
    resumed = await room_a.wait_for(ROOM_EVENT.RECONNECTED, timeout=WAIT)
    assert resumed.data["resumed"] is True and ann.status == SESSION_STATUS.ESTABLISHED
    assert statuses == [SESSION_STATUS.RECONNECTING], statuses  # ESTABLISHED is not emitted a second time
    await published_a.wait_for(STREAM_STATUS.PUBLISHING, WAIT)
    assert published_a.id and published_a.id != old_id
    await ann_plays_bob.wait_for(STREAM_STATUS.PLAYING, WAIT)
    assert await latest_counter(ann_plays_bob.video) > before_a  # ann plays bob again: frames rise

    back = await room_b.wait_for(ROOM_EVENT.PUBLISHED, lambda e: e.stream is not None
                                 and e.stream.id == published_a.id, WAIT)
    assert back.stream is not None
    bob_plays_ann_again = await back.stream.play()
    assert await latest_counter(bob_plays_ann_again.video) > before_b  # bob plays ann again: frames rise

    updates = [e.data["participant"]["state"] for e in room_b.events
               if e.name == ROOM_EVENT.PARTICIPANT_UPDATED and e.participant and e.participant.login == "ann"]
    assert updates == ["disconnected", "connected"], updates
    assert not [e for e in room_b.events if e.name in (ROOM_EVENT.LEFT, ROOM_EVENT.JOINED)]
    assert room_b.get_participant("ann") is not None
    await ann.disconnect()
    await bob.disconnect()


async def test_a_stranger_saying_the_dropped_login_is_refused(server: DaphneServer) -> None:
    """While ann's SDK is away, another connection saying "ann" gets login_taken; ann's own resume works."""
    ann = await roomapi.connect(server.ws_url, "ann", reconnect_delay=1.5)
    bob = await roomapi.connect(server.ws_url, "bob")
    room_a, room_b = await ann.join("stranger"), await bob.join("stranger")
    ann._ws.transport.abort()
    await room_b.wait_for(ROOM_EVENT.PARTICIPANT_UPDATED, lambda e: e.data["participant"]["state"] == "disconnected",
                          WAIT)
    mallory = await roomapi.connect(server.ws_url, "ann")
    with pytest.raises(roomapi.RoomApiError) as refused:
        await mallory.join("stranger")
    assert refused.value.code == "login_taken"
    await mallory.disconnect()
    await room_a.wait_for(ROOM_EVENT.RECONNECTED, timeout=WAIT)
    assert room_a.me.role == "moderator"  # ann created the room and keeps her role
    await ann.disconnect()
    await bob.disconnect()
