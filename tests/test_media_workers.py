"""Separate media workers (`manage.py runmedia`) behind daphne, sharing Redis: placement and pinning."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async as db

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from rooms.models import Room
from tests.conftest import require_redis
from tests.media_sources import CounterVideoTrack, read_counter
from tests.servers import ROOT, DaphneServer
from tests.test_admin import staff_client

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0
# A row of the admin's "media now" table: worker, publications, playbacks, kbit/s in, loss %.
MEDIA_ROW = re.compile(r"<tr><td>(w\d)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>([\d.-]+)</td></tr>")


class MediaWorkerProcess:
    """A `manage.py runmedia` subprocess with the test server's environment."""

    def __init__(self, env: dict[str, str], worker_id: str) -> None:
        handle, name = tempfile.mkstemp(prefix=f"runmedia-{worker_id}-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runmedia", "--worker-id", worker_id],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def stop(self) -> None:
        """Terminate (then kill) the worker."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        logging.getLogger(__name__).warning("log of %s:\n%s", self.log_path, self.log_path.read_text()[-6000:])
        self.log_path.unlink(missing_ok=True)


def live_workers(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Workers announced in the registry within the last few seconds."""
    now = time.time()
    workers = {k.decode(): json.loads(v) for k, v in client.hgetall("media:workers").items()}
    return {k: v for k, v in workers.items() if now - v["seen"] < 6}


@pytest.fixture
def cluster(transactional_db: Any) -> Iterator[tuple[DaphneServer, redis.Redis]]:
    """daphne in MEDIA_MODE=workers plus two media workers, all on one Redis."""
    require_redis()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete("media:workers")
    for key in client.scan_iter("media:room:*"):
        client.delete(key)
    server = DaphneServer({"MEDIA_MODE": "workers", "MEDIA_METRICS_INTERVAL": "1"})
    server.start()
    workers = [MediaWorkerProcess(server.environment(), f"w{i}") for i in (1, 2)]
    try:
        deadline = time.monotonic() + 30
        while len(live_workers(client)) < 2:
            assert time.monotonic() < deadline, "media workers did not announce themselves"
            assert all(w.process.poll() is None for w in workers), [w.log_path.read_text() for w in workers]
            time.sleep(0.2)
        yield server, client
    finally:
        for worker in workers:
            worker.stop()
        server.close()


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
    frames = [await asyncio.wait_for(play.video.recv(), WAIT) for _ in range(10)]
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
