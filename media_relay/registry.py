"""Which media workers are alive, how loaded they are, and which room each serves.

For cascading it also holds each flowing stream's description (its origin
worker and tracks) and the worker of each peer connection placed away from its
room's worker.

With Redis (REDIS_URL) the registry is shared by every process; without it a
process-local registry serves the single process of `make run`.

Liveness.  A worker is alive while it was heard from within DEAD_AFTER_SECONDS,
by either of two writers that never write each other's data:

- its event loop announces its full entry (channel, load, streams, plays; `seen`
  the time of that announce) every HEARTBEAT_SECONDS and after each change;
- its heartbeat thread (media_relay/liveness.py) stamps `beat` every
  HEARTBEAT_SECONDS (Redis: the hash `media:alive`, worker id -> unix time),
  from its own thread and Redis client, so a loop saturated by media work cannot
  starve it.  The thread stops stamping when the loop has not run one of its
  callbacks for LOOP_STALL_SECONDS: a wedged loop is reaped like a dead process.

A worker reaped all the same (its loop silent for LOOP_STALL_SECONDS, or its
process stopped) whose loop turns again must not come back with what the reaper
already failed.  The claim that removes a reaped worker's entry leaves a mark
(Redis: the hash `media:reaped`); after its first announce a worker only
*refreshes* its entry, and a refresh that finds the mark (atomically with
respect to the claim) is refused and clears it: the worker then drops what its
last entry listed and announces itself afresh without it (media_relay/worker.py).
An entry lost without a claim (Redis restarted empty) is simply written again.

A saturated loop thus keeps its worker for as long as it keeps turning at least
once every LOOP_STALL_SECONDS; its entry's details may then lag (placement sees
the last load it announced).  A worker is reaped LOOP_STALL_SECONDS +
DEAD_AFTER_SECONDS after its loop last turned at the latest, DEAD_AFTER_SECONDS
after its process died.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
DEAD_AFTER_SECONDS = 6.0
LOOP_STALL_SECONDS = 20.0
"""The heartbeat thread stops vouching for a worker whose event loop has not turned for this long
(`runmedia --loop-stall-seconds`)."""


@dataclass(frozen=True)
class WorkerInfo:
    """A live media worker: its id, its channel and its load (peer connections)."""

    worker_id: str
    channel: str
    load: int
    seen: float
    """When it was last heard from: its loop's announce or its heartbeat thread's beat, the later."""
    streams: tuple[str, ...] = ()
    """Public ids of the streams it publishes: what fails if it dies (globally unique, unlike room ids)."""
    rooms: tuple[int, ...] = ()
    relay_host: str = ""
    """Where its cascading socket listens (empty: none)."""
    relay_port: int = 0
    plays: tuple[tuple[str, str, str], ...] = ()
    """(play id, stream id, reply channel) of its playbacks: what a reaper FAILS if it dies."""


class Registry(Protocol):
    """Where workers announce themselves and rooms are pinned."""

    async def announce(self, info: WorkerInfo, *, refresh: bool = False) -> bool:
        """Write the worker's entry; with ``refresh``, not if it was reaped since (False; the next write is
        accepted)."""
    async def withdraw(self, worker_id: str) -> None: ...
    async def alive(self) -> list[WorkerInfo]: ...
    async def pinned(self, room_id: int) -> str | None: ...
    async def pin(self, room_id: int, worker_id: str) -> None: ...
    async def unpin(self, room_id: int) -> None: ...
    async def dead(self) -> list[WorkerInfo]: ...
    async def claim(self, worker_id: str) -> bool: ...
    async def describe_stream(self, stream_id: str, description: dict[str, Any]) -> None: ...
    async def stream(self, stream_id: str) -> dict[str, Any] | None: ...
    async def forget_stream(self, stream_id: str) -> None: ...
    async def route(self, pc_id: str, worker_id: str) -> None: ...
    async def routed(self, pc_id: str) -> str | None: ...
    def beat(self, worker_id: str, when: float) -> None:
        """The heartbeat thread's stamp (blocking: called from that thread only, never from an event loop)."""


class LocalRegistry:
    """The registry of one process (in-memory channel layer)."""

    def __init__(self) -> None:
        self.workers: dict[str, WorkerInfo] = {}
        self.beats: dict[str, float] = {}
        """Written by heartbeat threads: one dict item assignment each, atomic under the GIL."""
        self.rooms: dict[int, str] = {}
        self.streams: dict[str, dict[str, Any]] = {}
        self.routes: dict[str, str] = {}
        self.reaped: set[str] = set()

    def _heard(self) -> list[WorkerInfo]:
        beats = dict(self.beats)
        return [replace(w, seen=max(w.seen, beats.get(w.worker_id, 0.0))) for w in list(self.workers.values())]

    async def announce(self, info: WorkerInfo, *, refresh: bool = False) -> bool:
        reaped = info.worker_id in self.reaped
        self.reaped.discard(info.worker_id)
        if refresh and reaped and info.worker_id not in self.workers:
            return False
        self.workers[info.worker_id] = info
        return True

    async def withdraw(self, worker_id: str) -> None:
        self.workers.pop(worker_id, None)
        self.beats.pop(worker_id, None)
        self.reaped.discard(worker_id)

    def beat(self, worker_id: str, when: float) -> None:
        self.beats[worker_id] = when

    async def alive(self) -> list[WorkerInfo]:
        cutoff = time.time() - DEAD_AFTER_SECONDS
        return [w for w in self._heard() if w.seen >= cutoff]

    async def pinned(self, room_id: int) -> str | None:
        return self.rooms.get(room_id)

    async def pin(self, room_id: int, worker_id: str) -> None:
        self.rooms[room_id] = worker_id

    async def unpin(self, room_id: int) -> None:
        self.rooms.pop(room_id, None)

    async def dead(self) -> list[WorkerInfo]:
        cutoff = time.time() - DEAD_AFTER_SECONDS
        return [w for w in self._heard() if w.seen < cutoff]

    async def claim(self, worker_id: str) -> bool:
        cutoff = time.time() - DEAD_AFTER_SECONDS
        if not any(w.worker_id == worker_id and w.seen < cutoff for w in self._heard()):
            return False  # gone already, or heard from since dead() was read
        self.beats.pop(worker_id, None)
        self.reaped.add(worker_id)
        return self.workers.pop(worker_id, None) is not None

    async def describe_stream(self, stream_id: str, description: dict[str, Any]) -> None:
        self.streams[stream_id] = description

    async def stream(self, stream_id: str) -> dict[str, Any] | None:
        return self.streams.get(stream_id)

    async def forget_stream(self, stream_id: str) -> None:
        self.streams.pop(stream_id, None)

    async def route(self, pc_id: str, worker_id: str) -> None:
        self.routes[pc_id] = worker_id

    async def routed(self, pc_id: str) -> str | None:
        return self.routes.get(pc_id)


def _info(worker_id: str, data: dict[str, Any], beat: float) -> WorkerInfo:
    return WorkerInfo(
        worker_id,
        data["channel"],
        int(data["load"]),
        max(float(data["seen"]), beat),
        tuple(data.get("streams") or ()),
        tuple(data.get("rooms") or ()),
        str(data.get("relay_host") or ""),
        int(data.get("relay_port") or 0),
        tuple(tuple(play) for play in data.get("plays") or ()),  # type: ignore[misc]
    )


_CLAIM = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local heard = math.max(tonumber(cjson.decode(raw)['seen']), tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'))
if heard >= tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
"""


_ANNOUNCE = """
local reaped = redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[3] == '1' and reaped == 1 and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisRegistry:
    """The registry shared through Redis by daphne processes and media workers."""

    WORKERS = "media:workers"
    ALIVE = "media:alive"
    """Worker id -> unix time of its heartbeat thread's last beat (the thread is its only writer)."""
    REAPED = "media:reaped"
    """Worker id -> when a reaper claimed it, until that worker writes its entry again."""
    ROOM = "media:room:{}"
    STREAM = "media:stream:{}"
    ROUTE = "media:pc:{}"
    KEEP = 7 * 86400

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.url = url
        self._redis: Any = None
        self._factory = redis.Redis.from_url
        self._sync: Any = None
        """The heartbeat thread's blocking client (redis-py's sync client is thread-safe)."""

    def _client(self) -> Any:
        # One client per event loop: redis.asyncio connections are loop-bound.
        import asyncio

        loop = asyncio.get_running_loop()
        if self._redis is None or self._redis[0] is not loop:
            self._redis = (loop, self._factory(self.url, decode_responses=True))
        return self._redis[1]

    async def announce(self, info: WorkerInfo, *, refresh: bool = False) -> bool:
        data = {
            "channel": info.channel,
            "load": info.load,
            "seen": info.seen,
            "streams": list(info.streams),
            "rooms": list(info.rooms),
            "relay_host": info.relay_host,
            "relay_port": info.relay_port,
            "plays": [list(play) for play in info.plays],
        }
        # One script, as the claim: a refresh never re-creates an entry that a reaper's claim removed.
        written = await self._client().eval(
            _ANNOUNCE, 2, self.WORKERS, self.REAPED, info.worker_id, json.dumps(data), "1" if refresh else "0"
        )
        return bool(written)

    async def withdraw(self, worker_id: str) -> None:
        await self._client().hdel(self.WORKERS, worker_id)
        await self._client().hdel(self.ALIVE, worker_id)
        await self._client().hdel(self.REAPED, worker_id)

    def beat(self, worker_id: str, when: float) -> None:
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_url(self.url, socket_timeout=HEARTBEAT_SECONDS, socket_connect_timeout=2)
        self._sync.hset(self.ALIVE, worker_id, repr(when))

    async def _heard(self) -> list[WorkerInfo]:
        async with self._client().pipeline(transaction=True) as pipe:
            entries, beats = await pipe.hgetall(self.WORKERS).hgetall(self.ALIVE).execute()
        return [
            _info(worker_id, json.loads(raw), float(beats.get(worker_id) or 0.0)) for worker_id, raw in entries.items()
        ]

    async def alive(self) -> list[WorkerInfo]:
        cutoff = time.time() - DEAD_AFTER_SECONDS
        return [w for w in await self._heard() if w.seen >= cutoff]

    async def pinned(self, room_id: int) -> str | None:
        value = await self._client().get(self.ROOM.format(room_id))
        return str(value) if value else None

    async def pin(self, room_id: int, worker_id: str) -> None:
        await self._client().set(self.ROOM.format(room_id), worker_id, ex=7 * 86400)

    async def unpin(self, room_id: int) -> None:
        await self._client().delete(self.ROOM.format(room_id))

    async def dead(self) -> list[WorkerInfo]:
        cutoff = time.time() - DEAD_AFTER_SECONDS
        return [w for w in await self._heard() if w.seen < cutoff]

    async def claim(self, worker_id: str) -> bool:
        # One script, so atomic: it removes the worker only if it is still silent (a beat or an announce since
        # dead() was read saves it), and answers 1 to exactly one caller: that process cleans up after the worker.
        cutoff = time.time() - DEAD_AFTER_SECONDS
        return bool(
            await self._client().eval(_CLAIM, 3, self.WORKERS, self.ALIVE, self.REAPED, worker_id, repr(cutoff))
        )

    async def describe_stream(self, stream_id: str, description: dict[str, Any]) -> None:
        await self._client().set(self.STREAM.format(stream_id), json.dumps(description), ex=self.KEEP)

    async def stream(self, stream_id: str) -> dict[str, Any] | None:
        raw = await self._client().get(self.STREAM.format(stream_id))
        return json.loads(raw) if raw else None

    async def forget_stream(self, stream_id: str) -> None:
        await self._client().delete(self.STREAM.format(stream_id))

    async def route(self, pc_id: str, worker_id: str) -> None:
        await self._client().set(self.ROUTE.format(pc_id), worker_id, ex=self.KEEP)

    async def routed(self, pc_id: str) -> str | None:
        value = await self._client().get(self.ROUTE.format(pc_id))
        return str(value) if value else None


_registry: Registry | None = None


def registry() -> Registry:
    """The registry of this process."""
    global _registry
    if _registry is None:
        _registry = RedisRegistry(settings.REDIS_URL) if settings.REDIS_URL else LocalRegistry()
    return _registry
