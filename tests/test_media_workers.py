"""Separate media workers (`manage.py runmedia`) behind daphne, sharing Redis: placement and pinning."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async as db

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from rooms.models import Room
from tests.media_sources import CounterVideoTrack, read_counter
from tests.media_workers import live_workers, media_cluster
from tests.servers import DaphneServer
from tests.test_admin import staff_client

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0
# A row of the admin's "media now" table: worker, publications, playbacks, kbit/s in, loss %.
MEDIA_ROW = re.compile(r"<tr><td>(w\d)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>([\d.-]+)</td></tr>")


@pytest.fixture
def cluster(transactional_db: Any) -> Iterator[tuple[DaphneServer, redis.Redis]]:
    """daphne in MEDIA_MODE=workers plus two media workers, all on one Redis."""
    with media_cluster({"MEDIA_METRICS_INTERVAL": "1"}, ("w1", "w2")) as pair:
        yield pair


async def publish_and_play(server: DaphneServer, room_name: str, publisher: str, viewer: str) -> Any:
    """One publisher and one player in a room; returns the room of the player."""
    pub = await roomapi.connect(server.ws_url, publisher)
    sub = await roomapi.connect(server.ws_url, viewer)
    room_p, room_v = await pub.join(room_name), await sub.join(room_name)
    stream = await room_p.publish(video=CounterVideoTrack())
    await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    event = await room_v.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    assert event.stream is not None
    play = await event.stream.play()
    video: Any = play.video
    frames = [await asyncio.wait_for(video.recv(), WAIT) for _ in range(10)]
    numbers = [read_counter(f) for f in frames]
    assert numbers == sorted(numbers)
    return room_p, pub, sub


async def test_rooms_are_placed_on_the_least_loaded_worker_and_pinned(cluster: Any) -> None:
    """Two rooms land on the two workers; every stream of a room stays on the room's worker."""
    server, client = cluster
    room_1, pub_1, sub_1 = await publish_and_play(server, "placed-1", "ann", "bob")
    room_2, pub_2, sub_2 = await publish_and_play(server, "placed-2", "cat", "dan")
    pins = {room.id: client.get(f"media:room:{room.id}").decode() for room in (room_1, room_2)}
    assert set(pins.values()) == {"w1", "w2"}, pins
    loads = {k: v["load"] for k, v in live_workers(client).items()}
    assert loads == {"w1": 2, "w2": 2}, loads
    # A second stream in room 1 goes to room 1's worker, whatever the loads.
    extra = await room_1.publish(video=CounterVideoTrack(), kind="screen")
    await extra.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    assert client.get(f"media:room:{room_1.id}").decode() == pins[room_1.id]
    for connection in (pub_1, sub_1, pub_2, sub_2):
        await connection.disconnect()


async def test_a_dead_worker_fails_its_streams_and_clients_publish_again(cluster: Any) -> None:
    """Killing a worker FAILS its rooms' streams for everyone; a new publish lands on a live worker."""
    server, client = cluster
    room_p, pub, sub = await publish_and_play(server, "dies", "ann", "bob")
    room_v = sub.room
    dead = client.get(f"media:room:{room_p.id}").decode()
    others = [w for w in live_workers(client) if w != dead]
    pid = int(subprocess.check_output(["pgrep", "-f", f"runmedia --worker-id {dead}"]).split()[0])
    os.kill(pid, signal.SIGKILL)
    failed = await room_p.wait_for(ROOM_EVENT.FAILED, lambda e: e.stream is not None, timeout=30)
    assert "media worker" in failed.info
    await room_v.wait_for(ROOM_EVENT.UNPUBLISHED, timeout=WAIT)
    await room_v.send_message("signalling still works")
    await room_p.wait_for(ROOM_EVENT.MESSAGE, timeout=WAIT)
    again = await room_p.publish(video=CounterVideoTrack())
    await again.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    assert client.get(f"media:room:{room_p.id}").decode() in others
    event = await room_v.wait_for(ROOM_EVENT.PUBLISHED, lambda e: e.stream is not None and e.stream.id == again.id)
    assert event.stream is not None
    play = await event.stream.play()
    frame = await asyncio.wait_for(play.video.recv(), WAIT)
    assert read_counter(frame) >= 0
    await pub.disconnect()
    await sub.disconnect()


async def test_the_admin_room_page_shows_the_rooms_media_per_worker(cluster: Any) -> None:
    """Issue 14: the admin's room page shows, per media worker, the room's publications, playbacks, inbound
    bitrate and loss, as the runmedia workers published them through Redis."""
    server, _client = cluster
    _room, pub, sub = await publish_and_play(server, "figures", "fay", "gus")
    try:
        admin = await db(staff_client)()
        room = await db(Room.objects.get)(name="figures")
        deadline = time.monotonic() + WAIT
        rows: list[tuple[str, ...]] = []
        while time.monotonic() < deadline:
            page = await db(admin.get)(f"/admin/rooms/room/{room.pk}/change/")
            assert page.status_code == 200
            rows = MEDIA_ROW.findall(page.content.decode())
            if rows and int(rows[0][3]) > 0:
                break
            await asyncio.sleep(0.5)
        assert len(rows) == 1, rows
        worker, publications, playbacks, kbits, _loss = rows[0]
        assert worker in ("w1", "w2") and (publications, playbacks) == ("1", "1"), rows
        assert int(kbits) > 0, rows
    finally:
        await pub.disconnect()
        await sub.disconnect()
