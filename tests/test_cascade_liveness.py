"""A media worker's liveness under load (issue 13): a busy event loop is not a dead worker; a wedged one is.

Real `runmedia` workers started with the test-only `--test-block-loop` option: on SIGUSR1 a worker's event loop
is blocked (busy, holding the GIL) for the given durations, as a flood of media work would hold it.  The
in-memory registry of `make run` gets the same rule: the heartbeat thread against this test's own blocked loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from media_relay.liveness import Heartbeat
from media_relay.registry import DEAD_AFTER_SECONDS, HEARTBEAT_SECONDS, LocalRegistry, WorkerInfo
from roomapi import STREAM_STATUS
from tests.media_workers import media_cluster
from tests.servers import DaphneServer
from tests.test_cascade import frames_advance, publish_with_players, wait_announced

BUSY = (8.0, 8.0)
"""Two stretches of 8 s without a turn of the loop: longer than DEAD_AFTER_SECONDS (6), shorter than
LOOP_STALL_SECONDS (20)."""
WEDGED = 90.0
"""Longer than LOOP_STALL_SECONDS plus DEAD_AFTER_SECONDS, with room for a loaded machine."""


def blocking_cluster(blocks: tuple[float, ...]) -> Any:
    """Two cascading workers that block their loop on SIGUSR1."""
    spec = ",".join(str(b) for b in blocks)
    return media_cluster({"MEDIA_CASCADE_AFTER": "0"}, ("l1", "l2"), ("--test-block-loop", spec))


@pytest.fixture
def busy_cluster(transactional_db: Any) -> Iterator[tuple[DaphneServer, redis.Redis]]:
    with blocking_cluster(BUSY) as pair:
        yield pair


@pytest.fixture
def wedging_cluster(transactional_db: Any) -> Iterator[tuple[DaphneServer, redis.Redis]]:
    with blocking_cluster((WEDGED,)) as pair:
        yield pair


def block_loop_of(worker_id: str) -> None:
    pid = int(subprocess.check_output(["pgrep", "-f", f"runmedia --worker-id {worker_id}"]).split()[0])
    os.kill(pid, signal.SIGUSR1)


def loop_announced(client: redis.Redis, worker_id: str) -> float:
    """When the worker's event loop last announced it (0: not in the registry)."""
    import json

    raw = client.hget("media:workers", worker_id)
    return float(json.loads(raw)["seen"]) if raw else 0.0


@pytest.mark.timeout(180)
async def test_a_worker_with_a_saturated_loop_stays_alive_and_serving(busy_cluster: Any) -> None:
    """The publisher's worker, its loop held for 8 s twice (no registry announce from the loop meanwhile), is never
    reaped: its stream and every player, on it or on the other worker, keep playing once the loop is free."""
    server, client = busy_cluster
    room_p, stream, connections, plays = await publish_with_players(server, "busy-origin")
    origin = client.get(f"media:room:{room_p.id}").decode()
    placed = [await wait_announced(client, play.id) for play in plays]
    assert origin in placed and any(w != origin for w in placed), (origin, placed)
    blocked_at = time.time()
    block_loop_of(origin)
    # Until the loop announces again after both stretches (bounded), the worker must stay in the registry.
    deadline = time.monotonic() + 90
    while loop_announced(client, origin) < blocked_at + sum(BUSY):
        assert client.hexists("media:workers", origin), f"{origin} was reaped while its loop was busy"
        assert time.monotonic() < deadline, "the blocked loop did not come back"
        await asyncio.sleep(0.3)
    assert client.hexists("media:workers", origin)
    assert stream.status() == STREAM_STATUS.PUBLISHING
    for play in plays:
        assert play.status() == STREAM_STATUS.PLAYING, (play.status(), play.reason)
        await frames_advance(play)
    for connection in connections:
        await connection.disconnect()


@pytest.mark.timeout(180)
async def test_a_worker_with_a_wedged_loop_is_reaped_and_its_players_fail(wedging_cluster: Any) -> None:
    """A worker whose loop stops turning for good (longer than LOOP_STALL_SECONDS) is reaped although its process
    and heartbeat thread live on: its players FAIL; the publisher's worker and its players carry on."""
    server, client = wedging_cluster
    room_p, stream, connections, plays = await publish_with_players(server, "wedged")
    origin = client.get(f"media:room:{room_p.id}").decode()
    placed = [await wait_announced(client, play.id) for play in plays]
    doomed = next(w for w in placed if w != origin)
    block_loop_of(doomed)
    lost = [play for play, worker in zip(plays, placed, strict=True) if worker == doomed]
    kept = [play for play, worker in zip(plays, placed, strict=True) if worker != doomed]
    for play in lost:
        await play.wait_for(STREAM_STATUS.FAILED, timeout=75)
        assert "media worker" in play.reason
    assert not client.hexists("media:workers", doomed)
    for play in kept:
        assert play.status() == STREAM_STATUS.PLAYING
        await frames_advance(play)
    assert stream.status() == STREAM_STATUS.PUBLISHING
    for connection in connections:
        await connection.disconnect()


def hold_the_loop(seconds: float) -> None:
    """Keep this test's event loop busy (holding the GIL but for the interpreter's switches)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_in_memory_registry_a_busy_loop_keeps_its_worker_a_wedged_one_loses_it() -> None:
    """LocalRegistry (no Redis): the thread's beats keep a worker whose loop is held past DEAD_AFTER_SECONDS
    alive; once the loop has not turned for the thread's stall limit, the beats stop and the worker is dead."""
    registry = LocalRegistry()
    await registry.announce(WorkerInfo("local", "channel", 0, time.time()))
    busy = Heartbeat(registry, "local", asyncio.get_running_loop(), stall_seconds=DEAD_AFTER_SECONDS + 10)
    busy.start()
    try:
        hold_the_loop(DEAD_AFTER_SECONDS + 2)
        assert [w.worker_id for w in await registry.alive()] == ["local"]
        assert await registry.dead() == [] and not await registry.claim("local")
    finally:
        await asyncio.to_thread(busy.stop)
    await asyncio.sleep(0)
    stall = 2.0
    wedged = Heartbeat(registry, "local", asyncio.get_running_loop(), stall_seconds=stall)
    wedged.start()
    try:
        # Beats stop at most `stall` after the loop's last turn; the worker is dead DEAD_AFTER_SECONDS later.
        hold_the_loop(stall + HEARTBEAT_SECONDS + DEAD_AFTER_SECONDS + 1)
        assert await registry.alive() == []
        assert [w.worker_id for w in await registry.dead()] == ["local"]
        assert await registry.claim("local") and "local" not in registry.beats
    finally:
        await asyncio.to_thread(wedged.stop)
