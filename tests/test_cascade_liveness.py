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


RECOVERS = 24.0
"""Long enough to be reaped with `--loop-stall-seconds 2` (silent ~2-4 s after the block, reaped DEAD_AFTER_SECONDS
later by the other worker's heartbeat), with room for a loaded machine; then the loop turns again."""


@pytest.fixture
def recovering_cluster(transactional_db: Any) -> Iterator[tuple[DaphneServer, redis.Redis]]:
    with media_cluster(
        {"MEDIA_CASCADE_AFTER": "0"}, ("r1", "r2"), ("--test-block-loop", str(RECOVERS), "--loop-stall-seconds", "2")
    ) as pair:
        yield pair


def entry_of(client: redis.Redis, worker_id: str) -> dict[str, Any] | None:
    import json

    raw = client.hget("media:workers", worker_id)
    return json.loads(raw) if raw else None


@pytest.mark.timeout(180)
async def test_a_reaped_worker_that_recovers_drops_what_was_failed(recovering_cluster: Any) -> None:
    """The publisher's worker is reaped as dead (its loop wedged past the stall limit): the stream and every player
    FAIL.  When its loop turns again it comes back empty: it never re-announces the failed stream or plays, nor
    pins the room again, and no player of the failed stream plays on."""
    server, client = recovering_cluster
    room_p, stream, connections, plays = await publish_with_players(server, "reaped-origin")
    origin = client.get(f"media:room:{room_p.id}").decode()
    placed = [await wait_announced(client, play.id) for play in plays]
    assert origin in placed and any(w != origin for w in placed), (origin, placed)
    blocked_at = time.time()
    block_loop_of(origin)
    await stream.wait_for(STREAM_STATUS.FAILED, timeout=60)
    assert entry_of(client, origin) is None, "the worker was not reaped"
    for play in plays:  # FAILED (its worker was reaped) or UNPUBLISHED (its stream failed), first come
        await ended(play)
    # Its loop turns again and announces it (bounded); then a few of its heartbeats.
    deadline = time.monotonic() + 90
    while loop_announced(client, origin) < blocked_at + RECOVERS:
        assert time.monotonic() < deadline, "the recovered worker did not announce itself again"
        await asyncio.sleep(0.3)
    failed_plays = {play.id for play in plays}
    for _ in range(int(3 * HEARTBEAT_SECONDS / 0.5)):
        entry = entry_of(client, origin)
        assert entry is not None, "the recovered worker left the registry"
        assert stream.id not in entry["streams"], f"{origin} announces the failed stream again: {entry}"
        assert not failed_plays & {play[0] for play in entry["plays"]}, f"{origin} announces failed plays: {entry}"
        pinned = client.get(f"media:room:{room_p.id}")
        assert pinned is None or pinned.decode() != origin, f"{origin} pinned the failed stream's room again"
        await asyncio.sleep(0.5)
    for play in plays:
        assert play.status() in ENDED, (play.status(), play.reason)
    for connection in connections:
        await connection.disconnect()


ENDED = (STREAM_STATUS.FAILED, STREAM_STATUS.UNPUBLISHED)


async def ended(play: Any, timeout: float = 30) -> None:
    """Wait (bounded) until a playback has ended, FAILED or UNPUBLISHED."""
    deadline = time.monotonic() + timeout
    while play.status() not in ENDED:
        assert time.monotonic() < deadline, (play.status(), play.reason)
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("kind", ["local", "redis"])
async def test_a_refresh_is_refused_once_after_a_claim_and_a_lost_entry_is_written_again(kind: str) -> None:
    """The registry's side of a reaped worker coming back: its refresh after a claim is refused (once: it then
    announces afresh); an entry lost without a claim (Redis restarted empty) is refreshed as before."""
    from media_relay.registry import RedisRegistry, Registry
    from tests.conftest import require_redis

    reg: Registry
    if kind == "redis":
        require_redis()
        reg = RedisRegistry(os.environ["REDIS_URL"])
        await reg.withdraw("mark")
    else:
        reg = LocalRegistry()
    old = WorkerInfo("mark", "channel", 1, time.time() - DEAD_AFTER_SECONDS - 5, streams=("s1",))
    assert await reg.announce(old)
    assert await reg.claim("mark")
    fresh = WorkerInfo("mark", "channel", 0, time.time())
    assert not await reg.announce(fresh, refresh=True), "a reaped worker refreshed its failed entry"
    assert [w.worker_id for w in await reg.alive()] == []
    assert await reg.announce(fresh)
    assert [w.streams for w in await reg.alive()] == [()]
    await reg.withdraw("mark")  # lost without a claim: written again
    assert await reg.announce(fresh, refresh=True)
    assert [w.worker_id for w in await reg.alive()] == ["mark"]
    await reg.withdraw("mark")
