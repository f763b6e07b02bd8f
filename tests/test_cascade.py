"""Cascading: one stream played from two media workers (real `runmedia` processes, Redis, aiortc players, VP8)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import roomapi
from roomapi import STREAM_STATUS
from tests.media_sources import CounterVideoTrack, read_counter
from tests.media_workers import live_workers, media_cluster
from tests.servers import ROOT, DaphneServer
from tests.test_media_workers import WAIT

pytestmark = pytest.mark.django_db(transaction=True)

PLAYERS = 4


@pytest.fixture
def cascade_cluster(transactional_db: Any) -> Iterator[tuple[DaphneServer, redis.Redis]]:
    """daphne (MEDIA_MODE=workers, every play on the least-loaded worker) plus two media workers on one Redis."""
    with media_cluster({"MEDIA_CASCADE_AFTER": "0"}, ("c1", "c2")) as pair:
        yield pair


async def frames_advance(play: Any, count: int = 10) -> list[int]:
    """Decode ``count`` frames of a played counter video; their numbers only go up."""
    numbers = [read_counter(await asyncio.wait_for(play.video.recv(), WAIT)) for _ in range(count)]
    assert numbers == sorted(numbers) and numbers[-1] > numbers[0], numbers
    return numbers


def worker_of(client: redis.Redis, play_id: str) -> str:
    """The worker that announces a playback."""
    for worker_id, info in live_workers(client).items():
        if any(play[0] == play_id for play in info.get("plays") or ()):
            return worker_id
    raise AssertionError(f"no live worker announces play {play_id}")


async def wait_announced(client: redis.Redis, play_id: str) -> str:
    """The worker of a playback, once its worker announced it (bounded)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return worker_of(client, play_id)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def publish_with_players(server: DaphneServer, room_name: str) -> tuple[Any, Any, list[Any], list[Any]]:
    """A publisher and PLAYERS players of its stream; returns (publisher room, stream, connections, plays)."""
    pub = await roomapi.connect(server.ws_url, "publisher")
    room_p = await pub.join(room_name)
    stream = await room_p.publish(video=CounterVideoTrack())
    await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    connections, plays = [pub], []
    for index in range(PLAYERS):
        viewer = await roomapi.connect(server.ws_url, f"viewer{index}")
        room_v = await viewer.join(room_name)
        publisher = room_v.get_participant("publisher")
        assert publisher is not None
        info = publisher.streams.get(stream.id)
        assert info is not None
        info.room = room_v
        play = await info.play()
        await frames_advance(play)
        connections.append(viewer)
        plays.append(play)
    return room_p, stream, connections, plays


async def test_players_on_two_workers_all_decode_the_stream(cascade_cluster: Any) -> None:
    """Plays spread over both workers; every player, on the publisher's worker or the other, decodes VP8 frames."""
    server, client = cascade_cluster
    room_p, _, connections, plays = await publish_with_players(server, "cascade")
    origin = client.get(f"media:room:{room_p.id}").decode()
    placed = [await wait_announced(client, play.id) for play in plays]
    assert origin in placed and any(w != origin for w in placed), (origin, placed)
    for play in plays:  # still flowing on both workers, after everyone joined
        await frames_advance(play)
    # A stopped remote player leaves the others playing; a new one lands and decodes again.
    remote = next(play for play, worker in zip(plays, placed, strict=True) if worker != origin)
    await remote.stop()
    for play in plays:
        if play is not remote:
            await frames_advance(play, 5)
    for connection in connections:
        await connection.disconnect()


async def test_a_killed_worker_fails_only_its_players_who_play_again(cascade_cluster: Any) -> None:
    """SIGKILL the worker holding only players: they FAIL and play again elsewhere; the rest never stop."""
    server, client = cascade_cluster
    room_p, stream, connections, plays = await publish_with_players(server, "cascade-kill")
    origin = client.get(f"media:room:{room_p.id}").decode()
    placed = [await wait_announced(client, play.id) for play in plays]
    doomed = next(w for w in placed if w != origin)
    pid = int(subprocess.check_output(["pgrep", "-f", f"runmedia --worker-id {doomed}"]).split()[0])
    os.kill(pid, signal.SIGKILL)
    lost = [play for play, worker in zip(plays, placed, strict=True) if worker == doomed]
    kept = [play for play, worker in zip(plays, placed, strict=True) if worker != doomed]
    for play in lost:
        await play.wait_for(STREAM_STATUS.FAILED, timeout=40)
        assert "media worker" in play.reason
    for play in kept:
        assert play.status() == STREAM_STATUS.PLAYING
        await frames_advance(play)
    assert stream.status() == STREAM_STATUS.PUBLISHING
    # The players that failed play again: the live worker (the origin) takes them.
    for play in lost:
        again = await play.stream.play()
        await frames_advance(again)
        assert await wait_announced(client, again.id) == origin
    for connection in connections:
        await connection.disconnect()


@pytest.mark.timeout(150)
def test_quick_cascading_benchmark_delivers_frames_to_every_player() -> None:
    """`python -m benchmarks.cascade --quick`: 4 players over 2 workers all receive frames (no timing checks)."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.cascade", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=140
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    row = next(line for line in completed.stdout.splitlines() if line.split()[:2] == ["4", "cascade"])
    assert row.split()[-1] == "4/4", completed.stdout
